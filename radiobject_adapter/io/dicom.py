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
_POS_TOL_MM = 1e-3  # DS values carry up to 16 characters: rounding stays far below this
_STEP_REL_TOL = 0.01  # steps may differ by 1 % from the median (scanner rounding)


class DicomSeriesError(ValueError):
    """A series that cannot be read as one regular volume (the message names it)."""

    def __init__(self, series_uid: str, message: str) -> None:
        super().__init__(f"DICOM series {series_uid}: {message}")
        self.series_uid = series_uid


@dataclass(frozen=True)
class _Slice:
    path: str
    frame: int | None  # frame index in a multi-frame object
    position: np.ndarray  # ImagePositionPatient (LPS, mm)
    orientation: np.ndarray  # ImageOrientationPatient (row direction, column direction)
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    shape: tuple[int, int]  # (Rows, Columns)
    slope: float
    intercept: float
    instance_number: int
    sop_instance_uid: str


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
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

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

        from radiobject_adapter.store.layout import affine_to_json

        dtype = self.data.dtype
        return {
            "series_type": series_type,
            "voxel_spacing": str(self.spacing),
            "dimensions": str(tuple(int(s) for s in self.data.shape)),
            "datatype": int(nib.nifti1.data_type_codes.code[dtype]),
            "bitpix": int(dtype.itemsize * 8),
            "scl_slope": 1.0,  # already applied to the voxels
            "scl_inter": 0.0,
            "xyzt_units": 2,
            "spatial_units": "mm",
            "qform_code": 0,
            "sform_code": 0,
            "axcodes": self.axcodes,
            "affine_json": affine_to_json(self.affine),
            "orientation_source": "dicom",
            "source_path": os.path.dirname(os.path.abspath(self.files[0])),
        }


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


def _floats(values: Any, n: int, what: str, uid: str, path: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DicomSeriesError(uid, f"{path}: unreadable {what} {values!r}") from err
    if out.shape != (n,):
        raise DicomSeriesError(uid, f"{path}: {what} has {out.size} values, expected {n}")
    return out


def _first(seq_owner: Any, sequence: str, keyword: str) -> Any:
    seq = getattr(seq_owner, sequence, None)
    return getattr(seq[0], keyword, None) if seq else None


def _slices_of(ds: Any, path: str, uid: str) -> list[_Slice]:
    """One entry per frame: classic objects have one, enhanced multi-frame objects many."""
    rows_cols = (int(ds.Rows), int(ds.Columns))
    number = int(getattr(ds, "InstanceNumber", 0) or 0)
    sop = str(getattr(ds, "SOPInstanceUID", ""))
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
        out = []
        for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):

            def get(sequence: str, keyword: str, frame: Any = frame) -> Any:
                value = _first(frame, sequence, keyword)
                return value if value is not None or shared is None else _first(shared, sequence, keyword)

            pos, ori = (
                get("PlanePositionSequence", "ImagePositionPatient"),
                get("PlaneOrientationSequence", "ImageOrientationPatient"),
            )
            spacing = get("PixelMeasuresSequence", "PixelSpacing")
            if pos is None or ori is None or spacing is None:
                raise DicomSeriesError(uid, f"{path}: frame {i + 1} has no plane position/orientation/pixel spacing")
            slope = get("PixelValueTransformationSequence", "RescaleSlope")
            inter = get("PixelValueTransformationSequence", "RescaleIntercept")
            out.append(
                _Slice(
                    path,
                    i,
                    _floats(pos, 3, "ImagePositionPatient", uid, path),
                    _floats(ori, 6, "ImageOrientationPatient", uid, path),
                    tuple(_floats(spacing, 2, "PixelSpacing", uid, path)),
                    rows_cols,
                    1.0 if slope is None else float(slope),
                    0.0 if inter is None else float(inter),
                    number,
                    sop,
                )
            )
        return out
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise DicomSeriesError(uid, f"{path}: multi-frame object without per-frame plane positions")
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if k not in ds]
    if missing:
        raise DicomSeriesError(
            uid, f"{path} lacks {', '.join(missing)}: not a cross-sectional image (e.g. a projection radiograph)"
        )
    return [
        _Slice(
            path,
            None,
            _floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", uid, path),
            _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", uid, path),
            tuple(_floats(ds.PixelSpacing, 2, "PixelSpacing", uid, path)),
            rows_cols,
            float(getattr(ds, "RescaleSlope", 1.0) or 1.0),
            float(getattr(ds, "RescaleIntercept", 0.0) or 0.0),
            number,
            sop,
        )
    ]


def _check_uniform(slices: list[_Slice], uid: str) -> None:
    ref = slices[0]
    for s in slices[1:]:
        if s.shape != ref.shape:
            raise DicomSeriesError(
                uid, f"mixed image sizes {ref.shape} ({ref.path}) and {s.shape} ({s.path}); split the series"
            )
        if np.abs(s.orientation - ref.orientation).max() > 1e-4:
            raise DicomSeriesError(
                uid,
                f"mixed orientations {ref.orientation.round(4).tolist()} ({ref.path}) and "
                f"{s.orientation.round(4).tolist()} ({s.path}); e.g. a localizer series: split it",
            )
        if np.abs(np.subtract(s.pixel_spacing, ref.pixel_spacing)).max() > 1e-4:
            raise DicomSeriesError(
                uid, f"mixed pixel spacings {ref.pixel_spacing} ({ref.path}) and {s.pixel_spacing} ({s.path})"
            )


def _slice_vector(slices: list[_Slice], normal: np.ndarray, uid: str, single_step: float) -> np.ndarray:
    """The step from one slice to the next (LPS, mm), after checking the slices are regular."""
    if len(slices) == 1:
        return normal * single_step  # no neighbour: the header's slice spacing/thickness
    d = np.array([float(s.position @ normal) for s in slices])
    steps = np.diff(d)
    dup = np.flatnonzero(steps < _POS_TOL_MM)
    if dup.size:
        a, b = slices[dup[0]], slices[dup[0] + 1]
        raise DicomSeriesError(
            uid,
            f"{dup.size} duplicated slice position(s), e.g. {d[dup[0]]:.3f} mm in {a.path} and {b.path}; "
            "remove the duplicate files (or split the series)",
        )
    median = float(np.median(steps))
    ratio = steps / median
    if np.abs(ratio - 1).max() > _STEP_REL_TOL:
        gaps = np.flatnonzero(np.abs(ratio - np.round(ratio)) <= _STEP_REL_TOL * np.round(ratio))
        gaps = [int(i) for i in gaps if round(ratio[i]) >= 2]
        if gaps and all(abs(ratio[i] - 1) <= _STEP_REL_TOL or i in gaps for i in range(len(steps))):
            n_missing = int(sum(round(ratio[i]) - 1 for i in gaps))
            i = gaps[0]
            raise DicomSeriesError(
                uid,
                f"{n_missing} missing slice(s): the step is {median:.4g} mm but {steps[i]:.4g} mm between "
                f"{slices[i].path} and {slices[i + 1].path}; fetch the missing files",
            )
        raise DicomSeriesError(
            uid,
            f"uneven slice spacing: steps from {steps.min():.4g} to {steps.max():.4g} mm (median {median:.4g}); "
            "resample with a tool that interpolates (e.g. dcm2niix) or split the series",
        )
    first, last = slices[0].position, slices[-1].position
    step = (last - first) / (len(slices) - 1)
    # every slice on the line first + k * step (gantry tilt keeps a straight, sheared line)
    expected = first + np.outer(np.arange(len(slices)), step)
    off = np.linalg.norm(np.stack([s.position for s in slices]) - expected, axis=1)
    if off.max() > max(_POS_TOL_MM * 10, _STEP_REL_TOL * median):
        k = int(off.argmax())
        raise DicomSeriesError(uid, f"slice {slices[k].path} is {off[k]:.3g} mm off the line of the other slices")
    return step


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
