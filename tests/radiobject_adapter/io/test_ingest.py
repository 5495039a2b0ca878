"""Ingest: pairing, native dtypes, validation, resume, interruption, subject table."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tiledb

from radiobject_adapter import IngestError, RadiObject, ingest_niftis
from radiobject_adapter.synthetic import make_ct_dataset


@pytest.fixture
def small_ct(tmp_path: Path):
    return make_ct_dataset(str(tmp_path / "nifti"), n_subjects=4, shape_range=((20, 28), (20, 28), (12, 16)), seed=3)


def _ingest(store: Path, ds, **kwargs):
    return ingest_niftis(str(store), {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False, **kwargs)


def test_ingest_pairs_images_and_labels_by_subject_and_keeps_native_dtypes(small_ct, tmp_path: Path) -> None:
    report = _ingest(tmp_path / "store", small_ct, obs_meta=small_ct.subject_table)
    assert report.ok and report.n_written == 8
    radi = RadiObject(str(tmp_path / "store"))
    assert radi.collection_names == ("CT", "seg")
    assert radi.CT.subject_ids == radi.seg.subject_ids == small_ct.subject_ids
    for img_path, sid in zip(small_ct.images, small_ct.subject_ids):
        vol = radi.CT[sid]
        assert vol.dtype == np.int16
        np.testing.assert_array_equal(vol.to_numpy(), np.asanyarray(nib.load(img_path).dataobj))
        assert radi.seg[sid].dtype == np.uint8
        assert radi.seg[sid].obs_id == f"{sid}_seg" != vol.obs_id
    table = pd.read_csv(small_ct.subject_table)
    meta = radi.obs_meta.set_index("obs_subject_id")
    for row in table.itertuples():
        assert meta.at[row.subject_id, "diagnosis"] == row.diagnosis
        assert meta.at[row.subject_id, "age"] == row.age


def test_rerunning_the_same_ingest_adds_nothing(small_ct, tmp_path: Path) -> None:
    store = tmp_path / "store"
    _ingest(store, small_ct)
    again = _ingest(store, small_ct)
    assert again.n_written == 0
    assert sorted(again.already_present["CT"]) == small_ct.subject_ids
    radi = RadiObject(str(store))
    assert len(radi.CT) == len(small_ct.subject_ids)
    with tiledb.Group(str(store / "collections" / "CT" / "volumes")) as grp:
        assert len(grp) == len(small_ct.subject_ids)


def test_label_with_wrong_shape_rejects_only_that_subject_naming_both_files(small_ct, tmp_path: Path) -> None:
    bad_label = small_ct.labels[1]
    img = nib.load(bad_label)
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), img.affine), bad_label)
    report = _ingest(tmp_path / "store", small_ct)
    assert [f.subject_id for f in report.failures] == [small_ct.subject_ids[1]]
    reason = report.failures[0].reason
    assert "label shape (5, 5, 5)" in reason and bad_label in reason and small_ct.images[1] in reason
    radi = RadiObject(str(tmp_path / "store"))
    assert small_ct.subject_ids[1] not in radi.CT.subject_ids  # nothing of the subject written
    assert len(radi.CT) == len(radi.seg) == 3


def test_label_with_shifted_affine_is_rejected(small_ct, tmp_path: Path) -> None:
    lbl = nib.load(small_ct.labels[0])
    shifted = lbl.affine.copy()
    shifted[0, 3] += 2.5
    nib.save(nib.Nifti1Image(np.asanyarray(lbl.dataobj), shifted), small_ct.labels[0])
    report = _ingest(tmp_path / "store", small_ct)
    assert len(report.failures) == 1
    assert "affine differs" in report.failures[0].reason and "2.5" in report.failures[0].reason


def test_truncated_file_is_reported_by_name_and_the_rest_is_ingested(small_ct, tmp_path: Path) -> None:
    victim = small_ct.images[2]
    raw = Path(victim).read_bytes()
    Path(victim).write_bytes(raw[: len(raw) // 2])
    report = _ingest(tmp_path / "store", small_ct)
    assert [f.subject_id for f in report.failures] == [small_ct.subject_ids[2]]
    assert victim in report.failures[0].reason and "corrupt or truncated" in report.failures[0].reason
    assert RadiObject(str(tmp_path / "store")).CT.subject_ids == [
        s for i, s in enumerate(small_ct.subject_ids) if i != 2
    ]


def test_float_label_with_whole_values_becomes_integer_and_fractional_is_rejected(small_ct, tmp_path: Path) -> None:
    good = nib.load(small_ct.labels[0])
    nib.save(nib.Nifti1Image(np.asanyarray(good.dataobj).astype(np.float32), good.affine), small_ct.labels[0])
    bad = nib.load(small_ct.labels[1])
    frac = np.asanyarray(bad.dataobj).astype(np.float32) + 0.5
    nib.save(nib.Nifti1Image(frac, bad.affine), small_ct.labels[1])
    report = _ingest(tmp_path / "store", small_ct)
    assert [f.subject_id for f in report.failures] == [small_ct.subject_ids[1]]
    assert "non-integer" in report.failures[0].reason
    assert RadiObject(str(tmp_path / "store")).seg[small_ct.subject_ids[0]].dtype == np.uint8


def test_subject_table_with_duplicate_ids_fails_before_writing(small_ct, tmp_path: Path) -> None:
    table = pd.read_csv(small_ct.subject_table)
    pd.concat([table, table.iloc[:1]]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(IngestError, match=r"more than once.*case_000"):
        _ingest(tmp_path / "store", small_ct, obs_meta=str(tmp_path / "dup.csv"))
    assert not (tmp_path / "store").exists()


def test_two_files_for_one_subject_in_a_collection_is_an_error(small_ct, tmp_path: Path) -> None:
    shutil.copy(small_ct.images[0], small_ct.images[0].replace("_0000.nii.gz", "_0001.nii.gz"))
    with pytest.raises(IngestError, match="both map to subject 'case_000'"):
        _ingest(tmp_path / "store", small_ct)


def test_tiling_and_compression_options_reach_the_schema(small_ct, tmp_path: Path) -> None:
    _ingest(tmp_path / "axial", small_ct, tiling="axial", compression="lz4")
    vol = RadiObject(str(tmp_path / "axial")).CT.iloc[0]
    assert vol.tile_shape == (vol.shape[0], vol.shape[1], 1)
    with tiledb.open(vol.uri) as arr:
        assert isinstance(arr.schema.attr("voxels").filters[0], tiledb.LZ4Filter)
    _ingest(tmp_path / "iso", small_ct, tile_extent=8)
    vol = RadiObject(str(tmp_path / "iso")).CT.iloc[0]
    assert vol.tile_shape == (8, 8, 8)
    with tiledb.open(vol.uri) as arr:  # default pipeline: byte shuffle, then lz4
        filters = arr.schema.attr("voxels").filters
        assert isinstance(filters[0], tiledb.ByteShuffleFilter) and isinstance(filters[1], tiledb.LZ4Filter)


def test_empty_file_is_rejected(small_ct, tmp_path: Path) -> None:
    Path(small_ct.labels[3]).write_bytes(b"")
    report = _ingest(tmp_path / "store", small_ct)
    assert report.failures[0].subject_id == small_ct.subject_ids[3]
    assert "empty file" in report.failures[0].reason


INGEST_SCRIPT = """
import sys
from radiobject_adapter import ingest_niftis
# small tiles and a slow codec: each volume takes long enough to write that kills land inside it
ingest_niftis(sys.argv[1], {"CT": sys.argv[2], "seg": sys.argv[3]}, progress=False, tile_extent=8,
              compression="zstd", compression_level=12)
"""


def _kill_when(store: Path, proc: subprocess.Popen, n_entries: int, timeout: float = 60) -> bool:
    """SIGKILL the ingest once ``volumes/`` of CT or seg holds ``n_entries`` folders."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        count = sum(
            len(os.listdir(d)) - 1  # minus TileDB's own __group folder
            for d in (store / "collections" / "CT" / "volumes", store / "collections" / "seg" / "volumes")
            if d.is_dir()
        )
        if count >= n_entries:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait()
    return False


@pytest.mark.slow
def test_killed_ingest_leaves_a_valid_store_and_rerun_completes_exactly_once(tmp_path: Path) -> None:
    """Short version (CI): three kills, each a distinct phase of the write, then a rerun.

    Ingest writes subject by subject, the image (CT) then its label (seg). The kills land while
    the 1st volume folder is written (the store and its collections just created, nothing
    registered yet), the 4th (a label volume, in a resumed run) and the 7th (an image volume, in
    a run resumed twice). Every further kill is one more of the last two kinds (an image or a
    label volume mid-write, in a resumed run);
    ``test_twenty_kill_points_never_lose_or_corrupt_anything`` enumerates twenty of them
    under the ``exhaustive`` mark (``make test-exhaustive``).
    """
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=6, shape_range=((40, 48), (40, 48), (30, 36)), seed=5)
    store = tmp_path / "store"
    killed = 0
    for n_entries in (1, 4, 7):
        proc = subprocess.Popen([sys.executable, "-c", INGEST_SCRIPT, str(store), ds.images_dir, ds.labels_dir])
        killed += _kill_when(store, proc, n_entries)
        if not (store / "collections").exists():
            continue
        radi = RadiObject(str(store))  # opens after every kill
        for name, files in (("CT", ds.images), ("seg", ds.labels)):
            if name not in radi.collection_names:
                continue
            ids = radi.collection(name).subject_ids
            assert len(set(ids)) == len(ids)  # never doubled
            for sid in ids:  # every visible volume is complete
                src = files[ds.subject_ids.index(sid)]
                np.testing.assert_array_equal(
                    radi.collection(name)[sid].to_numpy(), np.asanyarray(nib.load(src).dataobj)
                )
    assert killed >= 2, "ingest finished before the kill points; make the data larger"
    report = _ingest(store, ds)
    assert report.ok
    radi = RadiObject(str(store))
    for name in ("CT", "seg"):
        col = radi.collection(name)
        assert col.subject_ids == ds.subject_ids  # each exactly once
        assert len(col.obs) == len(ds.subject_ids)


@pytest.mark.slow
@pytest.mark.exhaustive  # twenty kills of the two kinds the short version above runs in CI (make test-exhaustive)
def test_twenty_kill_points_never_lose_or_corrupt_anything(tmp_path: Path) -> None:
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=12, shape_range=((40, 48), (40, 48), (30, 36)), seed=8)
    store = tmp_path / "store"
    sources = {"CT": dict(zip(ds.subject_ids, ds.images)), "seg": dict(zip(ds.subject_ids, ds.labels))}
    kills = 0
    for n_entries in range(1, 2 * len(ds.subject_ids), 1):
        proc = subprocess.Popen([sys.executable, "-c", INGEST_SCRIPT, str(store), ds.images_dir, ds.labels_dir])
        kills += _kill_when(store, proc, n_entries)
        if kills >= 20:
            break
        if not (store / "collections").exists():
            continue
        radi = RadiObject(str(store))
        for name in radi.collection_names:
            col = radi.collection(name)
            assert len(set(col.subject_ids)) == len(col.subject_ids)  # never doubled
            for sid in col.subject_ids:  # every visible volume complete and right
                ref = np.asanyarray(nib.load(sources[name][sid]).dataobj)
                np.testing.assert_array_equal(col[sid].to_numpy(), ref)
    assert kills >= 20, f"only {kills} kill points landed before the ingest finished"
    assert _ingest(store, ds).ok
    radi = RadiObject(str(store))
    assert radi.CT.subject_ids == radi.seg.subject_ids == ds.subject_ids


def test_default_isotropic_tiles_are_32_for_images_and_64_for_one_byte_labels(tmp_path: Path) -> None:
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=1, shape_range=((70, 72), (70, 72), (66, 68)), seed=2)
    _ingest(tmp_path / "store", ds)
    radi = RadiObject(str(tmp_path / "store"))
    image, label = radi.CT.iloc[0], radi.seg.iloc[0]
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert image.tile_shape == (32, 32, 32)
    assert label.tile_shape == (64, 64, 64)
    np.testing.assert_array_equal(label.to_numpy(), np.asanyarray(nib.load(ds.labels[0]).dataobj))


def test_a_header_whose_voxel_sizes_disagree_with_its_affine_is_corrected_as_monai_does(tmp_path: Path) -> None:
    from monai.data.utils import correct_nifti_header_if_necessary

    from radiobject_adapter.io.nifti import load_nifti

    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    img = nib.Nifti1Image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), affine)
    img.header.set_zooms((1.0, 1.0, 1.0))  # what a careless writer leaves: pixdim not the affine's
    path = str(tmp_path / "bad_pixdim.nii.gz")
    nib.save(img, path)
    expected = correct_nifti_header_if_necessary(nib.load(path))
    loaded = load_nifti(path)
    assert not np.allclose(expected.affine, nib.load(path).affine)  # MONAI did correct this file
    np.testing.assert_allclose(loaded.header.get_zooms(), expected.header.get_zooms())
    np.testing.assert_allclose(loaded.affine, expected.affine)
    # a file that is already consistent comes back as it was
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), affine), tmp_path / "good.nii.gz")
    np.testing.assert_allclose(load_nifti(str(tmp_path / "good.nii.gz")).affine, affine, rtol=1e-6)
