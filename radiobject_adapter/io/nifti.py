"""Reading one NIfTI file the way MONAI's ``NibabelReader`` sees it, plus its metadata."""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass, replace
from typing import Any

import nibabel as nib
import numpy as np

from radiobject_adapter.store.layout import affine_spacing, obs_row

__all__ = ["LoadedVolume", "load_nifti"]

_SPATIAL_UNITS = {0: "unknown", 1: "m", 2: "mm", 3: "um"}


@dataclass(frozen=True)
class LoadedVolume:
    """Voxels (scaled as ``img.dataobj`` gives them, native dtype when unscaled) and header facts."""

    path: str
    data: np.ndarray
    affine: np.ndarray
    header: Any

    def with_data(self, data: np.ndarray) -> LoadedVolume:
        return replace(self, data=data)

    @property
    def sform_code(self) -> int:
        return int(self.header["sform_code"])

    @property
    def qform_code(self) -> int:
        return int(self.header["qform_code"])

    @property
    def orientation_source(self) -> str:
        if self.sform_code > 0:
            return "nifti_sform"
        if self.qform_code > 0:
            return "nifti_qform"
        return "identity"

    @property
    def axcodes(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))

    def _scl(self) -> tuple[float, float]:
        slope, inter = self.header.get_slope_inter()
        return (1.0 if slope is None else float(slope)), (0.0 if inter is None else float(inter))

    def array_metadata(self) -> dict[str, str]:
        """Array metadata keys as radiobject 0.1.1 writes them (all strings)."""
        slope, inter = self._scl()
        return {
            "orientation_axcodes": self.axcodes,
            "orientation_source": self.orientation_source,
            "orientation_confidence": "header",
            "nifti_sform_code": str(self.sform_code),
            "nifti_qform_code": str(self.qform_code),
            "nifti_scl_slope": str(slope),
            "nifti_scl_inter": str(inter),
            "nifti_xyzt_units": str(int(self.header["xyzt_units"])),
            "source_path": os.path.abspath(self.path),
        }

    def obs_row(self, series_type: str) -> dict[str, Any]:
        """The collection ``obs`` row (radiobject's NIfTI columns)."""
        slope, inter = self._scl()
        units = int(self.header["xyzt_units"])
        return obs_row(
            series_type,
            self.data.shape,
            self.affine,
            os.path.abspath(self.path),
            datatype=int(self.header["datatype"]),
            bitpix=int(self.header["bitpix"]),
            scl_slope=slope,
            scl_inter=inter,
            xyzt_units=units,
            spatial_units=_SPATIAL_UNITS.get(units & 0x07, "unknown"),
            qform_code=self.qform_code,
            sform_code=self.sform_code,
            orientation_source=self.orientation_source,
        )


def _corrected_header(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """``img`` with MONAI's ``correct_nifti_header_if_necessary`` applied.

    That function leaves a 3D file whose voxel sizes agree with its affine as it is; such a file
    (nearly every one) is let through here without importing MONAI, which would load torch and
    all of MONAI (about 15 CPU s) into every ingest process.
    """
    header = img.header
    if (
        header.get("dim") is not None
        and int(header["dim"][0]) == 3
        and np.allclose(np.asarray(header.get_zooms())[:3], affine_spacing(img.affine))
    ):
        return img
    from monai.data.utils import correct_nifti_header_if_necessary

    return correct_nifti_header_if_necessary(img)


def load_nifti(path: str, expect_ndim: int | None = 3) -> LoadedVolume:
    """Load a NIfTI file completely (a truncated file fails here, not later).

    Raises:
        ValueError: unreadable, truncated or corrupt file, or wrong number of dimensions,
            with the path in the message.
    """
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty file")
    try:
        img = _corrected_header(nib.load(path))
        data = np.asanyarray(img.dataobj, order="C")
    except (
        OSError,
        EOFError,
        zlib.error,
        gzip.BadGzipFile,
        nib.filebasedimages.ImageFileError,
        ValueError,
    ) as err:
        raise ValueError(
            f"{path}: cannot read NIfTI ({type(err).__name__}: {err}); the file is corrupt or truncated"
        ) from err
    if expect_ndim is not None and data.ndim != expect_ndim:
        raise ValueError(f"{path}: expected a {expect_ndim}D volume, got shape {data.shape}")
    return LoadedVolume(
        path=path,
        data=np.ascontiguousarray(data),
        affine=np.array(img.affine, dtype=np.float64),
        header=img.header,
    )
