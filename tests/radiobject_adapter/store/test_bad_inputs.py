"""Each bad input gets a clear error naming it, and the store keeps what it had.

The table in docs/bad_inputs.md lists the same cases; keep both in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from radiobject_adapter import IngestError, RadiObject, StoreNotFoundError, ingest_niftis
from radiobject_adapter.synthetic import make_ct_dataset


def _rewrite(path: str, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, nib.load(path).affine), path)


def _truncate(ds, i):
    raw = Path(ds.images[i]).read_bytes()
    Path(ds.images[i]).write_bytes(raw[: len(raw) // 3])
    return ds.images[i]


def _garbage(ds, i):
    Path(ds.images[i]).write_bytes(np.random.default_rng(0).bytes(5000))
    return ds.images[i]


def _empty(ds, i):
    Path(ds.labels[i]).write_bytes(b"")
    return ds.labels[i]


def _nan(ds, i):
    data = np.asanyarray(nib.load(ds.images[i]).dataobj).astype(np.float32)
    data[1, 2, 3], data[4, 5, 6] = np.nan, np.inf
    _rewrite(ds.images[i], data)
    return ds.images[i]


def _two_d(ds, i):
    _rewrite(ds.images[i], np.zeros((20, 20), np.int16))
    return ds.images[i]


def _four_d(ds, i):
    _rewrite(ds.images[i], np.zeros((20, 20, 12, 2), np.int16))
    return ds.images[i]


def _fractional_label(ds, i):
    _rewrite(ds.labels[i], np.asanyarray(nib.load(ds.labels[i]).dataobj).astype(np.float32) * 0.5)
    return ds.labels[i]


def _label_shape(ds, i):
    _rewrite(ds.labels[i], np.zeros((7, 7, 7), np.uint8))
    return ds.labels[i]


def _label_affine(ds, i):
    img = nib.load(ds.labels[i])
    affine = img.affine.copy()
    affine[:3, :3] *= 1.5
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), affine), ds.labels[i])
    return ds.labels[i]


def _label_classes(ds, i):
    data = np.asanyarray(nib.load(ds.labels[i]).dataobj).copy()
    data[0, 0, 0] = 5
    _rewrite(ds.labels[i], data)
    return ds.labels[i]


CASES: list[tuple[str, Callable, str, dict]] = [
    ("truncated .nii.gz", _truncate, "corrupt or truncated", {}),
    ("random bytes named .nii.gz", _garbage, "cannot read NIfTI", {}),
    ("empty file", _empty, "empty file", {}),
    ("NaN/Inf voxels", _nan, r"2 NaN/Inf voxel\(s\); fix the file, or ingest it as it is with --nonfinite report", {}),
    ("2D image where 3D expected", _two_d, "expected a 3D volume", {}),
    ("4D image where 3D expected", _four_d, "expected a 3D volume", {}),
    ("float label with non-integer values", _fractional_label, "non-integer", {}),
    ("label shape differs from image", _label_shape, r"label shape \(7, 7, 7\)", {}),
    ("label affine differs from image", _label_affine, "affine differs", {}),
    (
        "label classes beyond those declared",
        _label_classes,
        r"classes \[5\] beyond the declared maximum 2",
        {"max_label": 2},
    ),
]


@pytest.fixture
def store_with_one_subject(tmp_path: Path):
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=3, shape_range=((20, 24), (20, 24), (12, 14)), seed=1)
    first = tmp_path / "first"
    (first / "img").mkdir(parents=True)
    (first / "lbl").mkdir(parents=True)
    Path(ds.images[2]).rename(first / "img" / Path(ds.images[2]).name)
    Path(ds.labels[2]).rename(first / "lbl" / Path(ds.labels[2]).name)
    store = str(tmp_path / "store")
    assert ingest_niftis(store, {"CT": str(first / "img"), "seg": str(first / "lbl")}, progress=False).ok
    return ds, store


def _snapshot(store: str) -> dict:
    radi = RadiObject(store)
    return {
        name: {sid: radi.collection(name)[sid].to_numpy().tobytes() for sid in radi.collection(name).subject_ids}
        for name in radi.collection_names
    }


@pytest.mark.parametrize(("case", "spoil", "message", "options"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_named_and_rejected_and_the_store_keeps_what_it_had(
    store_with_one_subject, case: str, spoil: Callable, message: str, options: dict
) -> None:
    ds, store = store_with_one_subject
    before = _snapshot(store)
    bad_path = spoil(ds, 0)
    report = ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False, **options)
    assert [f.subject_id for f in report.failures] == ["case_000"], case
    reason = report.failures[0].reason
    assert bad_path in reason
    assert re.search(message, reason), reason
    after = _snapshot(store)
    for name, volumes in before.items():  # earlier subjects untouched
        assert {k: after[name][k] for k in volumes} == volumes
    assert "case_000" not in after["CT"] and "case_000" not in after["seg"]
    assert "case_001" in after["CT"]  # the good subject of the same run was written


def test_nonfinite_voxels_can_be_reported_instead_of_rejected(store_with_one_subject) -> None:
    ds, store = store_with_one_subject
    _nan(ds, 0)
    report = ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False, nonfinite="report")
    assert report.ok and any("NaN/Inf" in w and "case_000" in w for w in report.warnings)
    assert np.isnan(RadiObject(store).CT["case_000"].to_numpy()).sum() == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"subject_id": ["case_000", "case_000"], "age": [1, 2]}), "more than once"),
        (pd.DataFrame({"subject_id": ["case_000", None], "age": [1, 2]}), "without a subject id"),
        (pd.DataFrame({"patient": ["case_000"], "age": [1]}), "no subject id column"),
    ],
    ids=["duplicate ids", "missing ids", "no id column"],
)
def test_bad_subject_table_fails_before_anything_is_written(store_with_one_subject, table, message) -> None:
    ds, store = store_with_one_subject
    before = _snapshot(store)
    with pytest.raises(IngestError, match=message):
        ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, obs_meta=table, progress=False)
    assert _snapshot(store) == before


def test_paths_that_are_not_stores_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="not a radiobundles store"):
        RadiObject(str(tmp_path / "does-not-exist"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    image = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), image)
    with pytest.raises(FileExistsError, match="exists and is not a store"):
        ingest_niftis(str(tmp_path / "folder"), {"CT": str(image)}, progress=False)
    assert (tmp_path / "folder" / "notes.txt").read_text() == "mine"
