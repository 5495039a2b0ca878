"""DICOM SEG output reads back onto the source series' geometry, voxel for voxel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from radiobject_adapter import RadiObject
from radiobject_adapter.io.dicom_ingest import ingest_dicoms
from radiobject_adapter.io.dicom_seg import read_dicom_seg_labels, rgb_to_dicom_lab, write_dicom_seg
from radiobject_adapter.testing.dicom import write_dicom_series

hd = pytest.importorskip("highdicom")
sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(params=["axial", "oblique"])
def ingested(request, tmp_path):
    aff = np.eye(4)
    angles = (0, 0, 0) if request.param == "axial" else (15, -20, 30)
    aff[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag([0.8, 0.7, 2.0])
    aff[:3, 3] = [5.0, -12.0, 40.0]
    write_dicom_series(tmp_path / "dcm", np.zeros((14, 12, 7), np.int16), aff, shuffle=True, seed=2)
    assert ingest_dicoms(str(tmp_path / "store"), {"CT": tmp_path / "dcm"}, progress=False).ok
    return tmp_path, RadiObject(str(tmp_path / "store")).collection("CT").get("case_001")


def _label(shape) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[2:8, 3:9, 1:4] = 1
    lab[9:13, 1:5, 3:7] = 2
    return lab


def test_seg_reads_back_through_highdicom_by_source_instance(ingested):
    tmp_path, vol = ingested
    lab = _label(vol.shape)
    seg = write_dicom_seg(lab, vol.metadata, tmp_path / "seg.dcm", {0: "background", 1: "liver", 2: "tumour"})
    back = read_dicom_seg_labels(tmp_path / "seg.dcm", json.loads(vol.metadata["dicom_sop_instance_uids"]))
    np.testing.assert_array_equal(back, lab)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == vol.metadata["dicom_series_instance_uid"]
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "tumour"]
    assert list(seg.SegmentSequence[0].RecommendedDisplayCIELabValue) == rgb_to_dicom_lab((230, 25, 75))


def test_seg_geometry_matches_the_source_series_in_world_space(ingested):
    """pydicom-seg places the SEG from its own plane positions; SimpleITK reads the source series."""
    pydicom_seg = pytest.importorskip("pydicom_seg")
    import pydicom

    tmp_path, vol = ingested
    lab = _label(vol.shape)
    write_dicom_seg(lab, vol.metadata, tmp_path / "seg.dcm", ["background", "a", "b"])
    result = pydicom_seg.MultiClassReader().read(pydicom.dcmread(tmp_path / "seg.dcm"))
    seg_img = result.image
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dcm")))
    src = reader.Execute()
    # put the SEG onto the source grid (nearest neighbour): must reproduce the label exactly
    on_src = sitk.Resample(seg_img, src, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    got = sitk.GetArrayFromImage(on_src).transpose(2, 1, 0)
    np.testing.assert_array_equal(got, lab)


def test_unnamed_class_and_non_dicom_source_are_refused(ingested, tmp_path):
    _, vol = ingested
    lab = _label(vol.shape)
    with pytest.raises(ValueError, match=r"classes \[2\] that have no name"):
        write_dicom_seg(lab, vol.metadata, tmp_path / "x.dcm", ["background", "a"])
    with pytest.raises(ValueError, match="not ingested from DICOM"):
        write_dicom_seg(lab, {"source_path": "a.nii.gz"}, tmp_path / "x.dcm", ["background", "a", "b"])
