"""One volume of a store: partial reads, planes, affine and spacing.

Example:
    >>> vol = RadiObject("store").CT["case_001"]
    >>> patch = vol[10:74, 20:84, 0:64]        # reads only the tiles under the patch
    >>> plane = vol.axial(40)                  # one axial slice, shape (X, Y)
    >>> vol.affine, vol.spacing, vol.shape, vol.dtype
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import tiledb

from radiobject_adapter.config import ctx_for_threads, current_settings, forget_array, open_array
from radiobject_adapter.errors import VolumeReadError
from radiobject_adapter.stats import count_query
from radiobject_adapter.store.layout import VOXELS, affine_from_json, affine_spacing

# TileDB-Py's low-level bindings (underscore methods, pinned tiledb<0.37); if a future version
# lacks them, reads fall back to ``arr.query(...)[...]``.
try:
    import tiledb.libtiledb as _lt

    _DIRECT_READS = all(hasattr(c, m) for c, m in ((_lt.Query, "_submit"), (_lt.Subarray, "_add_dim_range")))
except ImportError:  # pragma: no cover
    _DIRECT_READS = False


def _direct_read(arr: tiledb.Array, bounds: Sequence[tuple[int, int]], dtype: np.dtype) -> np.ndarray:
    """Read ``voxels`` in the half-open box straight into a new array: one libtiledb query, no
    result-size estimation, no second copy (``arr.query(...)[...]`` does both)."""
    ctx = getattr(arr, "_rb_lt_ctx", None)
    if ctx is None:
        ctx = _lt.Context(arr.ctx)
        try:
            arr._rb_lt_ctx = ctx
        except AttributeError:
            pass
    out = np.empty([hi - lo for lo, hi in bounds], dtype=dtype)
    query = _lt.Query(ctx, arr.array, _lt.QueryType.READ)
    query.layout = _lt.LayoutType.ROW_MAJOR
    sub = _lt.Subarray(ctx, arr.array)
    for i, (lo, hi) in enumerate(bounds):
        sub._add_dim_range(i, (int(lo), int(hi) - 1))
    query.set_subarray(sub)
    query.set_data_buffer(VOXELS, out, out.size)
    if query._submit() != _lt.QueryStatus.COMPLETE:  # an exact dense buffer always completes
        raise tiledb.TileDBError(f"incomplete read of {arr.uri} {list(bounds)}")
    return out


__all__ = ["Volume", "VolumeReadError"]


def _normalise_key(key: Any, shape: Sequence[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Turn an index into per-axis [start, stop) bounds and the axes that ints drop."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices ({len(key)}) for a volume of shape {tuple(shape)}")
    key = key + (slice(None),) * (len(shape) - len(key))
    bounds, dropped = [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                raise IndexError("volume slices must have step 1; subsample after reading")
            bounds.append((start, max(start, stop)))
        elif isinstance(k, (int, np.integer)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} out of range for axis {axis} of size {n}")
            bounds.append((i, i + 1))
            dropped.append(axis)
        else:
            raise TypeError(f"volumes are indexed by ints and slices, not {type(k).__name__}")
    return bounds, dropped


class Volume:
    """A read view of one TileDB volume array.

    Args:
        uri: the array URI (``<store>/collections/<name>/volumes/<i>``).
        ctx: a TileDB context to open it with (radiobject's call shape, e.g.
            ``Volume(uri, ctx=ctx_for_threads(shared_ctx))``); default: the process's own.
        timestamp: open the array as of this TileDB timestamp (time travel), e.g. to read an
            earlier version of a label (keyword only).
    """

    def __init__(
        self, uri: str, ctx: tiledb.Ctx | None = None, *, timestamp: int | tuple[int, int] | None = None
    ) -> None:
        if ctx is not None and not isinstance(ctx, tiledb.Ctx):
            raise TypeError(
                f"Volume's second argument is a tiledb.Ctx, not {type(ctx).__name__}; "
                "pass a time-travel timestamp as Volume(uri, timestamp=...)"
            )
        self.uri = str(uri)
        self.ctx = ctx
        self._ctx = ctx  # radiobject's attribute name
        self.timestamp = timestamp

    # -- building (radiobject's calls; see radiobject_adapter.store.build) ---------------------
    @classmethod
    def create(cls, uri: str, shape: Sequence[int], dtype: Any = np.float32, ctx: tiledb.Ctx | None = None) -> Volume:
        """An empty (fill-value) volume array of ``shape`` / ``dtype`` at ``uri``.

        Example:
            >>> Volume.create("vol0", (64, 64, 32), np.int16).shape
            (64, 64, 32)
        """
        from radiobject_adapter.store.build import write_volume_array

        write_volume_array(str(uri), None, shape, dtype, ctx=ctx)
        return cls(str(uri), ctx)

    @classmethod
    def from_numpy(
        cls, uri: str, data: np.ndarray, ctx: tiledb.Ctx | None = None, affine: np.ndarray | None = None
    ) -> Volume:
        """A volume array at ``uri`` holding ``data`` (3D or 4D), with ``affine`` if given.

        Example:
            >>> Volume.from_numpy("vol0", np.zeros((64, 64, 32), np.int16)).to_numpy().sum()
            0
        """
        from radiobject_adapter.store.build import write_volume_array

        write_volume_array(str(uri), np.asarray(data), affine=affine, ctx=ctx)
        return cls(str(uri), ctx)

    @classmethod
    def from_nifti(
        cls, uri: str, nifti_path: str, ctx: tiledb.Ctx | None = None, reorient: bool | None = None
    ) -> Volume:
        """A volume array at ``uri`` from a NIfTI file, with its affine and header facts;
        ``reorient=True`` stores it turned to the closest canonical (RAS+) orientation.

        Example:
            >>> Volume.from_nifti("vol0", "case_001_0000.nii.gz").spacing
        """
        from radiobject_adapter.store.build import load_for_build, write_volume_array

        loaded = load_for_build(str(nifti_path), reorient)
        write_volume_array(str(uri), loaded.data, affine=loaded.affine, meta=loaded.array_metadata(), ctx=ctx)
        return cls(str(uri), ctx)

    def set_obs_id(self, obs_id: str) -> None:
        """Store ``obs_id`` on the array (radiobject's call, before adding it to a collection)."""
        from radiobject_adapter.store.build import set_volume_metadata

        set_volume_metadata(self.uri, {"obs_id": obs_id}, ctx=self.ctx)
        self.__dict__.pop("metadata", None)

    # -- array access -------------------------------------------------------------------
    @property
    def _array(self) -> tiledb.Array:
        return open_array(self.uri, self.timestamp, ctx=self.ctx)

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """All array metadata (strings as stored)."""
        arr = self._array
        return {k: arr.meta[k] for k in arr.meta}

    def remember_metadata(self, entries: dict[str, Any]) -> None:
        """Show ``entries`` in this view's :attr:`metadata` without writing them (e.g. an index
        computed from its voxels in a read-only store, or just written by another handle)."""
        self.__dict__["metadata"] = {**self.metadata, **entries}

    def newest_fragment_timestamp(self) -> int | None:
        """Timestamp (ms) of the newest fragment this view reads: up to its time-travel
        timestamp, or to the moment its (per-process cached) array was opened; ``None`` if
        nothing was written yet."""
        limit = self.timestamp[1] if isinstance(self.timestamp, tuple) else self.timestamp
        if limit is None:
            limit = self._array.timestamp_range[1]
        stamps = [int(f.timestamp_range[1]) for f in tiledb.array_fragments(self.uri, ctx=ctx_for_threads())]
        stamps = [t for t in stamps if limit is None or t <= int(limit)]
        return max(stamps) if stamps else None

    @cached_property
    def shape(self) -> tuple[int, ...]:
        dom = self._array.schema.domain
        return tuple(int(dom.dim(i).domain[1]) - int(dom.dim(i).domain[0]) + 1 for i in range(dom.ndim))

    @cached_property
    def tile_shape(self) -> tuple[int, ...]:
        dom = self._array.schema.domain
        return tuple(int(dom.dim(i).tile) for i in range(dom.ndim))

    @cached_property
    def dtype(self) -> np.dtype:
        return self._array.schema.attr(VOXELS).dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def obs_id(self) -> str | None:
        value = self.metadata.get("obs_id")
        return None if value is None else str(value)

    @property
    def subject_id(self) -> str | None:
        value = self.metadata.get("obs_subject_id")
        return None if value is None else str(value)

    @cached_property
    def affine(self) -> np.ndarray:
        """The 4×4 voxel-to-world (RAS+ mm, NIfTI convention) matrix; identity if unknown."""
        text = self.metadata.get("orientation_affine")
        if text is None:
            return np.eye(4)
        return affine_from_json(str(text))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along x, y, z (norms of the affine's columns)."""
        return affine_spacing(self.affine)

    @property
    def tile_orientation(self) -> Any:
        """How the array is tiled, as radiobject's ``SliceOrientation`` (``None`` if unknown)."""
        from radiobject_adapter.ctx import SliceOrientation

        value = self.metadata.get("tile_orientation")
        try:
            return SliceOrientation(str(value)) if value is not None else None
        except ValueError:
            return None

    @property
    def source_path(self) -> str | None:
        value = self.metadata.get("source_path")
        return None if value is None else str(value)

    def __repr__(self) -> str:
        return f"Volume(obs_id={self.obs_id!r}, shape={self.shape}, dtype={self.dtype}, uri={self.uri!r})"

    # -- reads --------------------------------------------------------------------------
    def read_box(self, bounds: Sequence[tuple[int, int]]) -> np.ndarray:
        """Read the half-open box ``[(x0, x1), (y0, y1), (z0, z1)]`` (must lie inside)."""
        for (lo, hi), n in zip(bounds, self.shape):
            if lo < 0 or hi > n or lo > hi:
                raise IndexError(f"box {list(bounds)} outside volume of shape {self.shape}")
        if any(lo == hi for lo, hi in bounds):
            return np.zeros([hi - lo for lo, hi in bounds], dtype=self.dtype)
        sl = tuple(slice(lo, hi) for lo, hi in bounds)
        settings = current_settings().read
        for attempt in range(settings.retries + 1):
            count_query(self.uri)
            try:
                # no retries inside open_array: this loop is the retry (and reopens)
                arr = open_array(self.uri, self.timestamp, retry=False, ctx=self.ctx)
                if _DIRECT_READS:
                    return _direct_read(arr, bounds, self.dtype)
                out = arr.query(attrs=(VOXELS,))[sl]
                return out[VOXELS] if isinstance(out, dict) else out
            except tiledb.TileDBError as err:
                # The S3 SDK already retried the request; a failure here is a dropped connection
                # or an error that outlasted those tries: reopen and try again after a pause.
                if attempt == settings.retries:
                    raise VolumeReadError(f"reading {self.uri} failed after {attempt + 1} attempt(s): {err}") from err
                forget_array(self.uri)
                time.sleep(settings.retry_backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def __getitem__(self, key: Any) -> np.ndarray:
        bounds, dropped = _normalise_key(key, self.shape)
        data = self.read_box(bounds)
        if dropped:
            data = data.reshape([b[1] - b[0] for i, b in enumerate(bounds) if i not in dropped])
        return data

    def to_numpy(self) -> np.ndarray:
        """The whole volume."""
        return self[...]

    def slice(self, x: slice, y: slice, z: slice, t: slice | None = None) -> np.ndarray:
        """radiobject's partial read with slice objects; ``vol[x, y, z]`` is the same."""
        key = (x, y, z) if t is None or self.ndim == 3 else (x, y, z, t)
        return self[key]

    def get_statistics(self, percentiles: Sequence[float] | None = None) -> dict[str, float]:
        """Mean, std, min, max, median and ``p<N>`` percentiles of all voxels (radiobject's call)."""
        flat = self.to_numpy().ravel()
        stats = {
            "mean": float(flat.mean()),
            "std": float(flat.std()),
            "min": float(flat.min()),
            "max": float(flat.max()),
            "median": float(np.median(flat)),
        }
        for p, v in zip(percentiles or [], np.percentile(flat, list(percentiles or [])) if percentiles else []):
            stats[f"p{int(p)}"] = float(v)
        return stats

    def compute_histogram(
        self, bins: int = 256, value_range: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, bin_edges)`` of the voxel values (radiobject's call)."""
        return np.histogram(self.to_numpy().ravel(), bins=bins, range=value_range)

    def axial(self, z: int, t: int | None = None) -> np.ndarray:
        """Axial plane ``z`` as an (X, Y) array (of time point / channel ``t`` of a 4D volume)."""
        return self[:, :, z] if t is None else self[:, :, z, t]

    def sagittal(self, x: int, t: int | None = None) -> np.ndarray:
        """Sagittal plane ``x`` as a (Y, Z) array (of ``t`` of a 4D volume)."""
        return self[x, :, :] if t is None else self[x, :, :, t]

    def coronal(self, y: int, t: int | None = None) -> np.ndarray:
        """Coronal plane ``y`` as an (X, Z) array (of ``t`` of a 4D volume)."""
        return self[:, y, :] if t is None else self[:, y, :, t]

    def plane(self, axis: int | str, index: int) -> np.ndarray:
        """Plane by axis (0/``"sagittal"``, 1/``"coronal"``, 2/``"axial"``)."""
        names = {"sagittal": 0, "coronal": 1, "axial": 2}
        ax = names[axis] if isinstance(axis, str) else int(axis)
        key: list[Any] = [slice(None)] * 3
        key[ax] = index
        return self[tuple(key)]

    # -- export -------------------------------------------------------------------------
    def to_nifti(self, path: str, dtype: np.dtype | None = None, compression: bool | None = None) -> str:
        """Write the volume as NIfTI with its affine and (when known) sform/qform codes, to
        ``path`` as given; ``compression=True`` (radiobject's flag, also accepted as the second
        argument) adds ``.gz`` to a path without it. Returns the path written."""
        import nibabel as nib

        if isinstance(dtype, bool):  # radiobject's to_nifti(path, compression)
            dtype, compression = None, dtype
        path = os.fspath(path)
        if compression and not path.endswith(".gz"):
            path += ".gz"

        data = self.to_numpy()
        if dtype is not None:
            data = data.astype(dtype)
        img = nib.Nifti1Image(data, self.affine)
        sform = int(self.metadata.get("nifti_sform_code", 1) or 1)
        qform = int(self.metadata.get("nifti_qform_code", 1) or 1)
        img.header.set_sform(self.affine, code=sform)
        img.header.set_qform(self.affine, code=qform)
        units = self.metadata.get("nifti_xyzt_units")
        if units is not None:
            img.header["xyzt_units"] = int(units)
        nib.save(img, path)
        return path

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (shape, dtype, spacing, affine, ids)."""
        return {
            "obs_id": self.obs_id,
            "subject_id": self.subject_id,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "spacing": list(self.spacing),
            "affine": json.loads(json.dumps(self.affine.tolist())),
            "tile_shape": list(self.tile_shape),
        }
