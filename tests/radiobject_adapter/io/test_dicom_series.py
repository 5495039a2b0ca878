"""DICOM series read as volumes: geometry and voxels against SimpleITK, dcm2niix and the source."""

from __future__ import annotations

import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from radiobject_adapter.io.dicom import DicomSeriesError, load_dicom_series, scan_dicom
from radiobject_adapter.testing.dicom import write_dicom_series

pydicom = pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2000, shape).astype(np.int16)


def _affine(zooms: tuple[float, float, float], angles: tuple[float, float, float] = (0, 0, 0)) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(zooms)
    aff[:3, 3] = [12.5, -40.25, 77.0]
    return aff


def _only(folder: str):
    series = scan_dicom(folder)
    assert len(series) == 1
    return load_dicom_series(next(iter(series.values())))


def _sitk_ras(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's series reader (GDCM sorts by position), as (X, Y, Z) voxels + RAS affine."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    img = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), LPS @ lps


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine))
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize(
    ("zooms", "angles"),
    [((0.75, 0.8, 2.5), (0, 0, 0)), ((0.7, 0.9, 1.5), (25, -12, 33))],
    ids=["axial", "oblique"],
)
def test_shuffled_series_matches_source_and_simpleitk(tmp_path, zooms, angles):
    vol, aff = _volume((20, 24, 11)), _affine(zooms, angles)
    write_dicom_series(tmp_path, vol, aff, shuffle=True, seed=3)
    got = _only(str(tmp_path))
    assert got.data.dtype == np.int16
    np.testing.assert_array_equal(got.data, vol)
    np.testing.assert_allclose(got.affine, aff, atol=1e-4)
    ref_data, ref_affine = _sitk_ras(str(tmp_path))
    np.testing.assert_array_equal(got.data, ref_data)
    np.testing.assert_allclose(got.affine, ref_affine, atol=1e-4)


def test_slices_placed_by_position_not_instance_number(tmp_path):
    """InstanceNumber runs against position: placement must still follow ImagePositionPatient."""
    vol = _volume((8, 8, 6), seed=1)
    write_dicom_series(tmp_path, vol, _affine((1, 1, 2)), shuffle=True, seed=11)
    numbers = [int(pydicom.dcmread(f).InstanceNumber) for f in sorted(tmp_path.iterdir())]
    assert numbers == sorted(numbers)  # files named by InstanceNumber, which is shuffled vs. position
    np.testing.assert_array_equal(_only(str(tmp_path)).data, vol)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed (apt-get install dcm2niix)")
def test_matches_dcm2niix(tmp_path):
    vol, aff = _volume((18, 22, 9), seed=2), _affine((0.8, 0.6, 2.0), (10, 5, -20))
    src = tmp_path / "dcm"
    write_dicom_series(src, vol, aff, shuffle=True, slope=1.0, intercept=-1024)
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "ref", "-o", str(out), str(src)], check=True, capture_output=True
    )
    ref = nib.load(str(out / "ref.nii"))
    got = _only(str(src))
    ref_data, ref_affine = _canonical(np.asanyarray(ref.dataobj), ref.affine)
    got_data, got_affine = _canonical(got.data, got.affine)
    np.testing.assert_array_equal(got_data, ref_data)
    np.testing.assert_allclose(got_affine, ref_affine, atol=1e-3)


def test_enhanced_multiframe_equals_the_classic_series(tmp_path):
    vol, aff = _volume((16, 12, 7), seed=4), _affine((0.9, 0.9, 3.0), (0, 20, 0))
    write_dicom_series(tmp_path / "classic", vol, aff)
    write_dicom_series(tmp_path / "enhanced", vol, aff, multiframe=True, shuffle=True)
    classic, enhanced = _only(str(tmp_path / "classic")), _only(str(tmp_path / "enhanced"))
    assert len(set(enhanced.files)) == 1 and len(enhanced.files) == 7
    np.testing.assert_array_equal(enhanced.data, classic.data)
    np.testing.assert_allclose(enhanced.affine, classic.affine, atol=1e-6)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99"], ids=["rle", "deflate"])
def test_compressed_series_decode_to_the_same_voxels(tmp_path, syntax):
    vol, aff = _volume((10, 12, 5), seed=5), _affine((1, 1, 2))
    write_dicom_series(tmp_path, vol, aff, transfer_syntax=syntax)
    assert str(pydicom.dcmread(next(tmp_path.iterdir())).file_meta.TransferSyntaxUID) == syntax
    np.testing.assert_array_equal(_only(str(tmp_path)).data, vol)


def test_rescale_keeps_int16_when_exact_and_floats_otherwise(tmp_path):
    vol = _volume((6, 6, 4), seed=6)
    write_dicom_series(tmp_path / "int", vol, _affine((1, 1, 1)), slope=1.0, intercept=-1024)
    exact = _only(str(tmp_path / "int"))
    assert exact.data.dtype == np.int16 and exact.intercept == -1024
    halves = (vol // 2 * 2).astype(np.float64) / 2 + 0.5  # values on a 0.5 grid
    write_dicom_series(tmp_path / "float", halves, _affine((1, 1, 1)), slope=0.5, intercept=-1000.5)
    scaled = _only(str(tmp_path / "float"))
    assert scaled.data.dtype == np.float32
    np.testing.assert_allclose(scaled.data, halves)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_expb.dcm"]
)
def test_pydicom_sample_compressed_files_equal_the_uncompressed_one(tmp_path, name):
    from pydicom.data import get_testdata_file

    for src, folder in (("MR_small.dcm", "plain"), (name, "other")):
        (tmp_path / folder).mkdir()
        shutil.copy(get_testdata_file(src), tmp_path / folder / src)
    plain, other = _only(str(tmp_path / "plain")), _only(str(tmp_path / "other"))
    np.testing.assert_array_equal(other.data, plain.data)
    np.testing.assert_allclose(other.affine, plain.affine)


def test_pydicom_sample_ct_slice_matches_simpleitk(tmp_path):
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "CT_small.dcm")
    got = _only(str(tmp_path))
    ds = pydicom.dcmread(tmp_path / "CT_small.dcm")
    assert got.data.shape == (ds.Columns, ds.Rows, 1)
    ref_data, ref_affine = _sitk_ras(str(tmp_path))
    np.testing.assert_array_equal(got.data, ref_data)
    np.testing.assert_allclose(got.affine[:3, :2], ref_affine[:3, :2], atol=1e-4)  # in-plane axes
    np.testing.assert_allclose(got.affine[:3, 3], ref_affine[:3, 3], atol=1e-4)


def test_non_image_objects_and_stray_files_are_skipped(tmp_path):
    from pydicom.data import get_testdata_file

    write_dicom_series(tmp_path / "ct", _volume((6, 6, 3)), _affine((1, 1, 1)))
    shutil.copy(get_testdata_file("liver_1frame.dcm"), tmp_path / "seg.dcm")  # a DICOM SEG
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert [s.modality for s in scan_dicom(str(tmp_path)).values()] == ["CT"]


# -- bad series: clear errors naming the series -------------------------------------------------------
def _series_uid(folder) -> str:
    return str(pydicom.dcmread(next(iter(sorted(os.scandir(folder), key=lambda e: e.name))).path).SeriesInstanceUID)


def test_missing_slice_is_named(tmp_path):
    write_dicom_series(tmp_path, _volume((6, 6, 8)), _affine((1, 1, 2)))
    os.remove(tmp_path / "IM0004.dcm")
    uid = _series_uid(tmp_path)
    with pytest.raises(DicomSeriesError, match=rf"{uid}: 1 missing slice\(s\).*IM0003.*IM0005"):
        _only(str(tmp_path))


def test_duplicated_slice_is_named(tmp_path):
    write_dicom_series(tmp_path, _volume((6, 6, 5)), _affine((1, 1, 2)))
    ds = pydicom.dcmread(tmp_path / "IM0002.dcm")
    ds.SOPInstanceUID = ds.SOPInstanceUID[:-2] + "99"
    ds.save_as(tmp_path / "IM0002_copy.dcm")
    with pytest.raises(DicomSeriesError, match=r"duplicated slice position.*IM0002"):
        _only(str(tmp_path))


def test_uneven_spacing_is_rejected(tmp_path):
    write_dicom_series(tmp_path, _volume((6, 6, 5)), _affine((1, 1, 2)))
    ds = pydicom.dcmread(tmp_path / "IM0003.dcm")
    ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [
        float(ds.ImagePositionPatient[2]) + 0.7
    ]
    ds.save_as(tmp_path / "IM0003.dcm")
    with pytest.raises(DicomSeriesError, match=r"uneven slice spacing"):
        _only(str(tmp_path))


def test_mixed_orientation_and_size_are_rejected(tmp_path):
    write_dicom_series(tmp_path / "a", _volume((6, 6, 4)), _affine((1, 1, 2)))
    ds = pydicom.dcmread(tmp_path / "a" / "IM0001.dcm")
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(tmp_path / "a" / "IM0001.dcm")
    with pytest.raises(DicomSeriesError, match=r"mixed orientations"):
        _only(str(tmp_path / "a"))
    write_dicom_series(tmp_path / "b", _volume((6, 6, 4)), _affine((1, 1, 2)))
    other = tmp_path / "c"
    write_dicom_series(other, _volume((8, 6, 4)), _affine((1, 1, 2)), series_uid=_series_uid(tmp_path / "b"))
    shutil.copy(other / "IM0002.dcm", tmp_path / "b" / "IM_big.dcm")
    with pytest.raises(DicomSeriesError, match=r"mixed image sizes"):
        _only(str(tmp_path / "b"))


def test_undecodable_transfer_syntax_names_the_package(tmp_path, monkeypatch):
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("MR_small_jp2klossless.dcm"), tmp_path / "a.dcm")
    # as on a machine without the decoders: pydicom keeps only its uncompressed handler
    from pydicom.pixel_data_handlers import numpy_handler

    monkeypatch.setattr(pydicom.config, "pixel_data_handlers", [numpy_handler])
    with pytest.raises(DicomSeriesError, match=r"JPEG 2000.*Install pylibjpeg-openjpeg"):
        _only(str(tmp_path))
