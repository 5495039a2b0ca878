"""DICOM series as volumes: files grouped by series, slices placed by position, RAS affine.

A series becomes one ``(X, Y, Z)`` array: ``X`` runs along the rows of the image
(``ImageOrientationPatient[:3]``), ``Y`` down its columns, ``Z`` along the slice normal, slices
sorted by their position on that normal, never by file name or ``InstanceNumber``. The affine
is built from ``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing`` and the
step between slices, then turned from DICOM's LPS into RAS, the convention of NIfTI ingest
(nibabel), so the same scan ingested from DICOM or from a dcm2niix NIfTI lands on the same
world coordinates. ``RescaleSlope``/``RescaleIntercept`` are applied (CT in HU); integer
results that fit stay ``int16``. Enhanced multi-frame objects give one slice per frame.

A series that cannot be one regular volume (missing or duplicated slices, uneven steps,
mixed orientations or sizes, pixel data no installed decoder reads) raises
:class:`DicomSeriesError` naming the series; nothing is returned half-built.

Example:
    >>> series = scan_dicom("CT_folder/")                  # {SeriesInstanceUID: DicomSeries}
    >>> vol = load_dicom_series(series["1.2.3..."])
    >>> vol.data.shape, vol.affine                          # (X, Y, Z), RAS
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radiobject_adapter.io.dicom_geometry import (
    DicomSeriesError,
    _check_uniform,
    _first,
    _Slice,
    _slice_vector,
    _slices_of,
)

__all__ = [
    "DECODER_PACKAGES",
    "LPS_TO_RAS",
    "DicomSeries",
    "DicomSeriesError",
    "DicomVolume",
    "is_dicom_file",
    "load_dicom_series",
    "scan_dicom",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Objects that carry no image volume: segmentations, structure sets, reports, plans, states.
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC"})
# Which package decodes which compressed transfer syntax under pydicom 2.4 (the dicom extra installs them).
DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pillow or pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg (or pillow built with OpenJPEG)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg (or pillow built with OpenJPEG)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (or numpy, for pydicom's own RLE decoder)",
}


@dataclass
class DicomSeries:
    """The files of one series (headers read, pixels not yet)."""

    uid: str
    header: Any  # the first file's dataset without pixel data (tags shared by the series)
    files: list[str] = field(default_factory=list)

    def tag(self, keyword: str, default: str = "") -> str:
        value = getattr(self.header, keyword, None)
        return default if value is None or value == "" else str(value)

    @property
    def modality(self) -> str:
        return self.tag("Modality")

    @property
    def description(self) -> str:
        return self.tag("SeriesDescription")

    def label(self) -> str:
        """Short human description for messages: modality, number, description, folder."""
        folder = os.path.dirname(self.files[0]) if self.files else ""
        return f"{self.modality} #{self.tag('SeriesNumber', '?')} {self.description!r} in {folder}"


@dataclass(frozen=True)
class DicomVolume:
    """One series as a volume: voxels ``(X, Y, Z)``, RAS affine, and where each slice came from."""

    series: DicomSeries
    data: np.ndarray
    affine: np.ndarray
    files: tuple[str, ...]  # per slice (a multi-frame file repeats)
    sop_instance_uids: tuple[str, ...]  # per slice
    slope: float
    intercept: float

    @property
    def axcodes(self) -> str:
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def spacing(self) -> tuple[float, float, float]:
        from radiobject_adapter.store.layout import affine_spacing

        return affine_spacing(self.affine)

    def array_metadata(self) -> dict[str, str]:
        """Array metadata: orientation keys like NIfTI ingest, plus the series' identity."""
        return {
            "orientation_axcodes": self.axcodes,
            "orientation_source": "dicom",
            "orientation_confidence": "header",
            "source_path": os.path.dirname(os.path.abspath(self.files[0])),
            "dicom_series_instance_uid": self.series.uid,
            "dicom_study_instance_uid": self.series.tag("StudyInstanceUID"),
            "dicom_modality": self.series.modality,
            "dicom_sop_instance_uids": json.dumps(list(self.sop_instance_uids)),
            "dicom_files": json.dumps([os.path.abspath(f) for f in self.files]),
        }

    def obs_row(self, series_type: str) -> dict[str, Any]:
        """The collection ``obs`` row, with the columns NIfTI ingest fills."""
        import nibabel as nib

        from radiobject_adapter.store.layout import obs_row

        dtype = self.data.dtype
        return obs_row(
            series_type,
            self.data.shape,
            self.affine,
            os.path.dirname(os.path.abspath(self.files[0])),
            datatype=int(nib.nifti1.data_type_codes.code[dtype]),
            bitpix=int(dtype.itemsize * 8),
            scl_slope=1.0,  # already applied to the voxels
            scl_inter=0.0,
            xyzt_units=2,
            spatial_units="mm",
            qform_code=0,
            sform_code=0,
            orientation_source="dicom",
        )


def _walk(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    roots = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: list[str] = []
    for root in roots:
        root = os.fspath(root)
        if os.path.isfile(root):
            found.append(root)
            continue
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no such DICOM file or folder: {root!r}")
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            # .part: a download in progress (see dicomweb.pull_series)
            found.extend(
                os.path.join(folder, f) for f in sorted(files) if not f.startswith(".") and not f.endswith(".part")
            )
    return found


def is_dicom_file(path: str) -> bool:
    """``True`` for a DICOM Part 10 file (the ``DICM`` marker after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def scan_dicom(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, DicomSeries]:
    """Find the image series under folders (recursively) or among files.

    Files that are not DICOM Part 10 and non-image objects (SEG, RTSTRUCT, SR, ...) are
    skipped. Returns ``{SeriesInstanceUID: DicomSeries}`` in a stable order.

    Raises:
        FileNotFoundError: a path does not exist, or no DICOM image series was found.
    """
    import pydicom

    series: dict[str, DicomSeries] = {}
    for path in _walk(paths):
        if os.path.basename(path).upper() == "DICOMDIR" or not is_dicom_file(path):
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(getattr(ds, "Modality", "")).upper() in NON_IMAGE_MODALITIES or "Rows" not in ds:
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f"(no SeriesInstanceUID) {os.path.dirname(path)}")
        entry = series.setdefault(uid, DicomSeries(uid=uid, header=ds))
        entry.files.append(path)
    if not series:
        raise FileNotFoundError(f"no DICOM image series found in {paths!r}")
    return dict(sorted(series.items(), key=lambda kv: kv[1].files[0]))


def _decoder_hint(ts_uid: str) -> str:
    return DECODER_PACKAGES.get(ts_uid, "python-gdcm")


def _pixels(path: str, uid: str) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise DicomSeriesError(uid, f"{path}: colour images ({ds.PhotometricInterpretation}) are not volumes")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as err:  # pydicom raises RuntimeError/NotImplementedError/ValueError per handler
        ts = ds.file_meta.TransferSyntaxUID
        raise DicomSeriesError(
            uid,
            f"{path}: cannot decode pixel data in transfer syntax {ts.name} ({ts}): {err}. "
            f"Install {_decoder_hint(str(ts))} (pip install 'radiobundles[dicom]')",
        ) from err


def _output_dtype(raw: np.dtype, slopes: np.ndarray, intercepts: np.ndarray, lo: float, hi: float) -> np.dtype:
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return raw
    exact = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if exact and raw.kind in "iu":
        for candidate in (np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
    return np.dtype(np.float32)


def load_dicom_series(series: DicomSeries) -> DicomVolume:
    """Read all slices of a series into one volume (see the module docstring).

    Raises:
        DicomSeriesError: the series is not one regular volume, or its pixels cannot be decoded.
    """
    import pydicom

    uid = series.uid
    slices: list[_Slice] = []
    for path in series.files:
        slices.extend(_slices_of(pydicom.dcmread(path, stop_before_pixels=True), path, uid))
    _check_uniform(slices, uid)
    row_dir, col_dir = slices[0].orientation[:3], slices[0].orientation[3:]
    normal = np.cross(row_dir, col_dir)
    # position along the normal; ties (duplicates) are reported by _slice_vector
    slices.sort(key=lambda s: (float(s.position @ normal), s.instance_number))
    header = series.header
    thickness = _first(header, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence")
    single = getattr(header, "SpacingBetweenSlices", None) or getattr(header, "SliceThickness", None)
    if single is None and thickness is not None:
        single = getattr(thickness[0], "SliceThickness", None)
    step = _slice_vector(slices, normal, uid, float(single or 1.0))
    row_spacing, col_spacing = slices[0].pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = slices[0].position

    frames: dict[str, np.ndarray] = {}
    for s in slices:
        if s.path not in frames:
            frames[s.path] = _pixels(s.path, uid)
    raw_dtype = frames[slices[0].path].dtype
    rows, cols = slices[0].shape
    raw = np.empty((cols, rows, len(slices)), dtype=raw_dtype)
    for k, s in enumerate(slices):
        pix = frames[s.path]
        plane = pix[s.frame] if s.frame is not None and pix.ndim == 3 else pix
        if plane.shape != (rows, cols):
            raise DicomSeriesError(uid, f"{s.path}: pixel data shape {plane.shape} != Rows x Columns {(rows, cols)}")
        raw[:, :, k] = plane.T
    slopes = np.array([s.slope for s in slices])
    inters = np.array([s.intercept for s in slices])
    lo_raw, hi_raw = (float(raw.min()), float(raw.max())) if raw.size else (0.0, 0.0)
    ends = np.concatenate([lo_raw * slopes + inters, hi_raw * slopes + inters])
    dtype = _output_dtype(raw.dtype, slopes, inters, float(ends.min()), float(ends.max()))
    if np.all(slopes == 1) and np.all(inters == 0):
        data = raw
    elif dtype.kind == "f":
        data = raw.astype(np.float32) * slopes.astype(np.float32) + inters.astype(np.float32)
    else:
        data = (raw.astype(np.int64) * slopes.astype(np.int64) + inters.astype(np.int64)).astype(dtype)
    uniform = np.all(slopes == slopes[0]) and np.all(inters == inters[0])
    return DicomVolume(
        series=series,
        data=np.ascontiguousarray(data),
        affine=LPS_TO_RAS @ lps,
        files=tuple(s.path for s in slices),
        sop_instance_uids=tuple(s.sop_instance_uid for s in slices),
        slope=float(slopes[0]) if uniform else float("nan"),
        intercept=float(inters[0]) if uniform else float("nan"),
    )
