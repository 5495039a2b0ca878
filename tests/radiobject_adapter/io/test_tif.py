"""2D TIF ingest: volumes of shape (H, W, 1), identity affine, resumable, bad files reported."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from radiobject_adapter import RadiObject
from radiobject_adapter.io.ingest import IngestError
from radiobject_adapter.io.tif import ingest_tifs, is_tif_spec, load_tif, tif_subject_id


def _write(folder, name: str, image: np.ndarray) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    tifffile.imwrite(path, image)
    return path


@pytest.fixture
def tif_folders(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for kind in ("dente", "edente"):
        for i in range(3):
            image = rng.integers(0, 4000, size=(20, 16), dtype=np.uint16)
            _write(tmp_path / kind, f"img_000{i}.tif", image)
            images[(kind, f"img_000{i}")] = image
    return tmp_path, images


def test_tifs_become_hw1_volumes_with_identity_affine_and_native_dtype(tif_folders, tmp_path):
    root, images = tif_folders
    uri = str(tmp_path / "store")
    report = ingest_tifs(uri, {"dente": root / "dente", "edente": root / "edente"}, progress=False)
    assert report.ok and report.n_written == 6
    radi = RadiObject(uri)
    vol = radi.collection("dente")["img_0001"]
    assert vol.shape == (20, 16, 1)
    assert vol.dtype == np.uint16
    np.testing.assert_array_equal(vol.to_numpy()[:, :, 0], images[("dente", "img_0001")])
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    assert vol.source_path.endswith("img_0001.tif")
    assert sorted(radi.subject_ids) == ["img_0000", "img_0001", "img_0002"]


def test_numbered_names_keep_their_number_as_subject_id():
    assert tif_subject_id("data/dente/img_0001.tif") == "img_0001"
    assert tif_subject_id("scan-12_x.tiff", pattern=r"scan-(?P<subject>\d+)") == "12"


def test_second_run_skips_what_is_stored_and_completes_an_interrupted_ingest(tif_folders, tmp_path):
    root, _ = tif_folders
    uri = str(tmp_path / "store")
    first = ingest_tifs(uri, {"dente": [str(root / "dente" / "img_0000.tif")]}, progress=False)
    assert first.n_written == 1
    second = ingest_tifs(uri, {"dente": root / "dente"}, progress=False)
    assert second.written["dente"] == ["img_0001", "img_0002"]
    assert second.already_present["dente"] == ["img_0000"]
    third = ingest_tifs(uri, {"dente": root / "dente"}, progress=False)
    assert third.n_written == 0
    assert len(RadiObject(uri).collection("dente")) == 3


def test_unreadable_tif_is_reported_with_its_path_and_the_rest_is_written(tif_folders, tmp_path):
    root, _ = tif_folders
    bad = root / "dente" / "img_0009.tif"
    bad.write_bytes(b"II*\x00 this is not really a tiff")
    good = (root / "dente" / "img_0002.tif").read_bytes()
    (root / "dente" / "img_0008.tif").write_bytes(good[: len(good) // 2])  # truncated
    uri = str(tmp_path / "store")
    report = ingest_tifs(uri, {"dente": root / "dente"}, progress=False)
    assert sorted(f.subject_id for f in report.failures) == ["img_0008", "img_0009"]
    for failure in report.failures:
        assert "cannot read TIF" in failure.reason and failure.paths[0] in failure.reason
    assert len(RadiObject(uri).collection("dente")) == 3
    assert "REJECTED img_0009" in report.summary()


def test_load_tif_rejects_colour_and_multi_page_images(tmp_path):
    colour = _write(tmp_path, "rgb.tif", np.zeros((8, 8, 3), dtype=np.uint8))
    stack = _write(tmp_path, "stack.tif", np.zeros((4, 8, 8), dtype=np.uint16))
    with pytest.raises(ValueError, match="grayscale"):
        load_tif(colour)
    with pytest.raises(ValueError, match="one 2D image"):
        load_tif(stack)
    assert load_tif(_write(tmp_path, "single.tif", np.ones((1, 8, 6), dtype=np.float32))).shape == (8, 6)


def test_load_tif_rejects_nan_pixels(tmp_path):
    image = np.ones((8, 8), dtype=np.float32)
    image[2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN/Inf pixel"):
        load_tif(_write(tmp_path, "nan.tif", image))


def test_non_tif_files_and_duplicate_names_are_errors_before_writing(tmp_path):
    folder = tmp_path / "mixed"
    _write(folder, "a.tif", np.ones((4, 4), dtype=np.uint8))
    _write(folder, "a.tiff", np.ones((4, 4), dtype=np.uint8))
    with pytest.raises(IngestError, match="both map to subject 'a'"):
        ingest_tifs(str(tmp_path / "store"), {"x": folder}, progress=False)
    assert not (tmp_path / "store").exists()
    (folder / "a.tiff").unlink()
    (folder / "b.nii.gz").write_bytes(b"")
    assert not is_tif_spec(folder)
    with pytest.raises(IngestError, match="not TIF"):
        ingest_tifs(str(tmp_path / "store"), {"x": folder}, progress=False)


def test_subject_table_joins_on_the_file_name(tif_folders, tmp_path):
    import pandas as pd

    root, _ = tif_folders
    table = pd.DataFrame({"subject": ["img_0000", "img_0001", "img_0002"], "age": [61, 70, 55]})
    uri = str(tmp_path / "store")
    ingest_tifs(uri, {"dente": root / "dente"}, obs_meta=table, progress=False)
    assert RadiObject(uri).query("age > 60") == ["img_0000", "img_0001"]
