"""Synthetic DICOM series for tests and the DICOM demo, written with pydicom.

A volume given as ``(X, Y, Z)`` values (e.g. HU) with a RAS affine, as NIfTI ingest stores it,
is written as a CT series: one file per slice (or one enhanced multi-frame file), positions
and orientation from the affine (turned to DICOM's LPS), raw values ``(v - intercept) / slope``.
Files and ``InstanceNumber`` can be shuffled, so readers must place slices by position.

Example:
    >>> files = write_dicom_series("dcm/case_001", hu_volume, affine, patient_id="case_001", shuffle=True)
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["write_dicom_series"]

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def _ds(values: Any) -> list[str]:
    from pydicom.valuerep import format_number_as_ds

    return [format_number_as_ds(float(v)) for v in np.atleast_1d(values)]


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _base(patient_id: str, study_uid: str, series_uid: str, modality: str, description: str) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientID = patient_id
    ds.PatientName = f"Synthetic^{patient_id}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.PatientAge = "055Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic study"
    ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.Manufacturer = "radiobundles synthetic"
    ds.FrameOfReferenceUID = _uid("for", study_uid)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def _finish(ds: Any, sop_class: str, sop_uid: str, transfer_syntax: str) -> Any:
    from pydicom.dataset import FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    out = FileDataset("", ds, file_meta=meta, preamble=b"\0" * 128)
    out.is_little_endian, out.is_implicit_VR = True, False
    if transfer_syntax == "1.2.840.10008.1.2.5":
        out.compress(transfer_syntax)  # RLE: pydicom encodes it itself
    elif transfer_syntax != "1.2.840.10008.1.2.1":
        out.file_meta.TransferSyntaxUID = transfer_syntax  # e.g. deflate: dcmwrite handles it
    return out


def write_dicom_series(
    folder: str | os.PathLike,
    volume: np.ndarray,
    affine: np.ndarray,
    patient_id: str = "case_001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str = "CT",
    series_description: str = "synthetic",
    slope: float = 1.0,
    intercept: float = -1024.0,
    shuffle: bool = False,
    multiframe: bool = False,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    extra: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[str]:
    """Write ``volume`` (``(X, Y, Z)``, RAS ``affine``) as a DICOM series; returns the file paths.

    Args:
        shuffle: shuffle file names and ``InstanceNumber`` against slice positions.
        multiframe: one Enhanced CT object instead of one file per slice.
        transfer_syntax: Explicit VR Little Endian (default), RLE Lossless
            (``1.2.840.10008.1.2.5``) or Deflated Explicit VR (``1.2.840.10008.1.2.1.99``).
        extra: tags set on every file (e.g. ``{"SeriesNumber": 2}``).
    """
    os.makedirs(folder, exist_ok=True)
    study_uid = study_uid or _uid("study", patient_id)
    series_uid = series_uid or _uid("series", patient_id, series_description, modality)
    lps = _LPS @ np.asarray(affine, dtype=np.float64)
    zooms = np.linalg.norm(lps[:3, :3], axis=0)
    orientation = np.concatenate([lps[:3, 0] / zooms[0], lps[:3, 1] / zooms[1]])
    raw = (np.asarray(volume, dtype=np.float64) - intercept) / slope
    if not np.allclose(raw, np.round(raw)):
        raise ValueError("volume values are not whole multiples of slope above intercept")
    raw_dtype = np.uint16 if raw.min() >= 0 else np.int16
    raw = np.round(raw).astype(raw_dtype)
    n = raw.shape[2]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)  # order[k]: file/instance index of slice k
    positions = [lps[:3, 3] + k * lps[:3, 2] for k in range(n)]

    def common(ds: Any) -> None:
        ds.Rows, ds.Columns = int(raw.shape[1]), int(raw.shape[0])
        ds.PixelRepresentation = 1 if raw_dtype == np.int16 else 0
        for key, value in (extra or {}).items():
            setattr(ds, key, value)

    paths: list[str] = []
    if multiframe:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        ds = _base(patient_id, study_uid, series_uid, modality, series_description)
        common(ds)
        ds.InstanceNumber = 1
        ds.NumberOfFrames = n
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
        shared = Dataset()
        ori, measures, transform = Dataset(), Dataset(), Dataset()
        ori.ImageOrientationPatient = _ds(orientation)
        measures.PixelSpacing = _ds([zooms[1], zooms[0]])
        measures.SliceThickness = _ds(zooms[2])[0]
        transform.RescaleSlope, transform.RescaleIntercept = _ds(slope)[0], _ds(intercept)[0]
        transform.RescaleType = "HU"
        shared.PlaneOrientationSequence = Sequence([ori])
        shared.PixelMeasuresSequence = Sequence([measures])
        shared.PixelValueTransformationSequence = Sequence([transform])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames = []
        for f in range(n):
            k = int(order[f])  # frames stored shuffled too
            item, pos = Dataset(), Dataset()
            pos.ImagePositionPatient = _ds(positions[k])
            item.PlanePositionSequence = Sequence([pos])
            frames.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.PixelData = np.stack([raw[:, :, int(order[f])].T for f in range(n)]).tobytes()
        out = _finish(ds, ENHANCED_CT_IMAGE_STORAGE, _uid("sop", series_uid, "mf"), transfer_syntax)
        path = os.path.join(os.fspath(folder), "enhanced.dcm")
        out.save_as(path, write_like_original=False)
        return [path]
    for k in range(n):
        idx = int(order[k])
        ds = _base(patient_id, study_uid, series_uid, modality, series_description)
        common(ds)
        ds.InstanceNumber = idx + 1
        ds.ImagePositionPatient = _ds(positions[k])
        ds.ImageOrientationPatient = _ds(orientation)
        ds.PixelSpacing = _ds([zooms[1], zooms[0]])
        ds.SliceThickness = _ds(zooms[2])[0]
        ds.RescaleSlope, ds.RescaleIntercept = _ds(slope)[0], _ds(intercept)[0]
        ds.RescaleType = "HU"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionDateTime = _dt.datetime(2026, 1, 1, 12).strftime("%Y%m%d%H%M%S")
        ds.PixelData = np.ascontiguousarray(raw[:, :, k].T).tobytes()
        out = _finish(ds, CT_IMAGE_STORAGE, _uid("sop", series_uid, k), transfer_syntax)
        path = os.path.join(os.fspath(folder), f"IM{idx:04d}.dcm")
        out.save_as(path, write_like_original=False)
        paths.append(path)
    return paths
