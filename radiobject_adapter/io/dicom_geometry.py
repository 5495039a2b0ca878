"""Geometry of a DICOM series: per-slice position/orientation/spacing, and the regularity checks.

Used by :mod:`.dicom`: :func:`_slices_of` reads one entry per frame (classic or enhanced
multi-frame objects), :func:`_check_uniform` refuses mixed sizes/orientations/spacings, and
:func:`_slice_vector` refuses missing, duplicated, unevenly spaced or misplaced slices and
returns the step between slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from radiobject_adapter.errors import DicomSeriesError

__all__ = ["DicomSeriesError"]

_POS_TOL_MM = 1e-3  # DS values carry up to 16 characters: rounding stays far below this
_STEP_REL_TOL = 0.01  # steps may differ by 1 % from the median (scanner rounding)


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
