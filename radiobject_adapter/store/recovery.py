"""What a killed writer can leave, and how its work is completed from what is stored.

A volume is written in three steps (see :meth:`StoreWriter.write_volume`): voxels and
metadata, then group membership, then its ``obs`` row. The ``obs`` row is the commit point:
readers list only registered volumes that have a row (:class:`VolumeCollection`), so a
process killed between the membership and the row leaves a *pending* volume, complete but
invisible. Everything the row holds is also stored on the array (``radiobundles_obs_row``,
written with the voxels), so the next writer of that collection, or ``radiobundles check
--repair``, writes the row again from the array alone; the rerun of an ingest never skips
such a subject nor writes its voxels twice.

Example:
    >>> records, unreadable = registered_volumes("store/collections/seg/volumes")
    >>> rows = [r.obs_row() for r in records]        # what each volume's obs row must be
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tiledb

from radiobject_adapter.config import open_group
from radiobject_adapter.store.layout import affine_from_json, affine_spacing, obs_row

__all__ = ["OBS_ROW_KEY", "VolumeRecord", "derive_obs_row", "registered_volumes"]

# array metadata key holding the volume's obs row (JSON), written with its voxels
OBS_ROW_KEY = "radiobundles_obs_row"

_SPATIAL_UNITS = {0: "unknown", 1: "m", 2: "mm", 3: "um"}


def _nifti_codes(dtype: np.dtype) -> tuple[int, int]:
    """NIfTI ``datatype`` code and ``bitpix`` of a numpy dtype (0, 0 if NIfTI has none)."""
    import nibabel as nib

    try:
        return int(nib.nifti1.data_type_codes.code[np.dtype(dtype)]), int(np.dtype(dtype).itemsize * 8)
    except KeyError:
        return 0, int(np.dtype(dtype).itemsize * 8)


def derive_obs_row(meta: Mapping[str, Any], shape: Sequence[int], dtype: np.dtype, collection: str) -> dict[str, Any]:
    """The ``obs`` row of a stored volume, from its array metadata and schema alone.

    Volumes written by this version carry their row (``OBS_ROW_KEY``); for older ones (and
    radiobject's) the row is rebuilt from radiobject's metadata keys, the affine and the
    schema; the NIfTI ``datatype``/``bitpix`` then describe the stored voxels.
    """
    if OBS_ROW_KEY in meta:
        try:
            row = json.loads(str(meta[OBS_ROW_KEY]))
            if isinstance(row, dict):
                return row
        except ValueError:
            pass
    row = obs_row(collection, shape)
    if "orientation_affine" in meta:  # the stored text as it is (no axcodes: radiobject's rows have none)
        row["affine_json"] = str(meta["orientation_affine"])
        row["voxel_spacing"] = str(affine_spacing(affine_from_json(row["affine_json"])))
    row["datatype"], row["bitpix"] = _nifti_codes(dtype)

    def number(key: str, kind: type) -> Any:
        try:
            return kind(float(str(meta[key]))) if key in meta else None
        except ValueError:
            return None

    row["scl_slope"] = number("nifti_scl_slope", float)
    row["scl_inter"] = number("nifti_scl_inter", float)
    row["qform_code"] = number("nifti_qform_code", int)
    row["sform_code"] = number("nifti_sform_code", int)
    units = number("nifti_xyzt_units", int)
    row["xyzt_units"] = units
    if units is not None:
        row["spatial_units"] = _SPATIAL_UNITS.get(units & 0x07, "unknown")
    for key, column in (("orientation_axcodes", "axcodes"), ("orientation_source", None), ("source_path", None)):
        if key in meta:
            row[column or key] = str(meta[key])
    return {k: v for k, v in row.items() if v is not None}


@dataclass(frozen=True)
class VolumeRecord:
    """A registered member of a collection's ``volumes`` group, as stored."""

    collection: str
    member: str
    uri: str
    obs_id: str | None
    subject_id: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    meta: dict[str, Any] = field(repr=False)

    def obs_row(self) -> dict[str, Any]:
        """The full ``obs`` row this volume should have (index columns included)."""
        row = derive_obs_row(self.meta, self.shape, self.dtype, self.collection)
        return {**row, "obs_subject_id": self.subject_id, "obs_id": self.obs_id}


def registered_volumes(
    volumes_uri: str, collection: str, ctx: tiledb.Ctx | None = None, only: Sequence[str] | None = None
) -> tuple[list[VolumeRecord], list[tuple[str, str, str]]]:
    """Every member (or those named in ``only``) of a ``volumes`` group: readable arrays as
    records, and ``(member, uri, problem)`` for members that are not (missing, not an array)."""
    with open_group(volumes_uri, "r", ctx=ctx) as grp:
        members = [(m.name, m.uri) for m in grp if only is None or m.name in only]
    records: list[VolumeRecord] = []
    unreadable: list[tuple[str, str, str]] = []
    for name, uri in members:
        if tiledb.object_type(uri, ctx=ctx) != "array":
            unreadable.append((name, uri, "member is not a readable array"))
            continue
        with tiledb.open(uri, "r", ctx=ctx) as arr:
            meta = {k: arr.meta[k] for k in arr.meta}
            shape = tuple(int(s) for s in arr.schema.shape)
            dtype = arr.schema.attr(0).dtype
        obs_id = str(meta["obs_id"]) if "obs_id" in meta else None
        subject = str(meta["obs_subject_id"]) if "obs_subject_id" in meta else None
        records.append(VolumeRecord(collection, name, uri, obs_id, subject, shape, dtype, meta))
    return records, unreadable
