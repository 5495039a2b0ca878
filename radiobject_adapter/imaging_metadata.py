"""radiobject's ``radiobject.imaging_metadata`` names that its users call: the series types a
file name maps to, and a NIfTI file's header facts as one record.

The facts are the ones our store keeps in a collection's ``obs`` for every ingested NIfTI
(:meth:`~radiobject_adapter.io.nifti.LoadedVolume.obs_row`); this module reads them from a
file without loading its voxels. radiobject's DICOM metadata model is not offered (DICOM series
are ingested by :mod:`radiobject_adapter.io`).

Example:
    >>> infer_series_type("sub-01_ses-01_T1w.nii.gz"), infer_series_type("scan.nii.gz")
    ('T1w', 'unknown')
    >>> meta = extract_nifti_metadata("sub-01_T1w.nii.gz")
    >>> meta.dimensions, meta.voxel_spacing, meta.axcodes
    ((32, 32, 16), (1.0, 1.0, 2.0), 'RAS')
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from radiobject_adapter.io.nifti import LoadedVolume
from radiobject_adapter.store import build

__all__ = ["KNOWN_SERIES_TYPES", "NiftiMetadata", "extract_nifti_metadata", "infer_series_type"]

KNOWN_SERIES_TYPES: frozenset[str] = frozenset(build.SERIES_TYPES)


def infer_series_type(path: str | os.PathLike, header: Any = None) -> str:
    """The series type of a file from its name (BIDS suffix, then known fragments, case-
    insensitive), else ``"unknown"`` (radiobject's answer; our builders raise instead).
    ``header`` is accepted for radiobject's signature and not read."""
    try:
        return build.infer_series_type(path)
    except ValueError:
        return "unknown"


@dataclass(frozen=True)
class NiftiMetadata:
    """One NIfTI file's header facts, with the names of a collection's ``obs`` columns."""

    voxel_spacing: tuple[float, float, float]
    dimensions: tuple[int, int, int]
    datatype: int
    bitpix: int
    scl_slope: float
    scl_inter: float
    xyzt_units: int
    spatial_units: str
    qform_code: int
    sform_code: int
    axcodes: str
    affine_json: str
    orientation_source: str
    source_path: str

    def to_obs_dict(self, obs_id: str, obs_subject_id: str, series_type: str) -> dict[str, Any]:
        """The ``obs`` row for this file (radiobject's call)."""
        row = {k: (str(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        return {"obs_id": obs_id, "obs_subject_id": obs_subject_id, "series_type": series_type, **row}

    @property
    def affine(self) -> list[list[float]]:
        return json.loads(self.affine_json)


def extract_nifti_metadata(path: str | os.PathLike) -> NiftiMetadata:
    """Header facts of the NIfTI file at ``path`` (its voxels are not read).

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    img = nib.load(str(path))
    shape = tuple(int(n) for n in img.shape[:3])
    # obs_row needs only the voxels' shape: a zero-stride view stands in, nothing is read
    stub = np.broadcast_to(np.uint8(0), shape)
    row = LoadedVolume(str(path.absolute()), stub, np.asarray(img.affine, np.float64), img.header).obs_row("")
    spacing = tuple(float(v) for v in img.header.get_zooms()[:3])
    return NiftiMetadata(
        voxel_spacing=spacing,  # pixdim, as radiobject reports it
        dimensions=shape,
        **{k: row[k] for k in ("datatype", "bitpix", "scl_slope", "scl_inter", "xyzt_units", "spatial_units")},
        **{k: row[k] for k in ("qform_code", "sform_code", "axcodes", "affine_json", "orientation_source")},
        source_path=row["source_path"],
    )
