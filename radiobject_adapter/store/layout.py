"""On-disk layout of a store, compatible with RadiObject 0.1.1 (see RADIOBJECT_LAYOUT.md).

::

    <root>/                   group; meta subject_count, n_collections, radiobundles_format_version
      obs_meta                sparse dataframe, one row per subject (user columns)
      collections/<name>/     group per collection; meta n_volumes, name, [x|y|z]_dim
        obs                   sparse dataframe, one row per volume
        volumes/<i>           dense array per volume: dims x, y, z (int32), attribute ``voxels``

Volume identity is the ``obs_id`` stored on each array, never the member position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tiledb

from radiobject_adapter.errors import FormatVersionError

__all__ = [
    "FORMAT_VERSION",
    "FORMAT_VERSION_KEY",
    "INDEX_COLUMNS",
    "LABEL_CLASSES_KEY",
    "TILINGS",
    "VOXELS",
    "FormatVersionError",
    "Tiling",
    "affine_spacing",
    "collection_uri",
    "compression_filters",
    "create_volume_schema",
    "join_uri",
    "local_path",
    "make_obs_id",
    "obs_row",
    "read_format_version",
]

FORMAT_VERSION = 1
FORMAT_VERSION_KEY = "radiobundles_format_version"
VOXELS = "voxels"
INDEX_COLUMNS = ("obs_subject_id", "obs_id")
# a label collection group's class names (JSON list), see radiobject_adapter.store.label_classes
LABEL_CLASSES_KEY = "label_classes"
TILINGS = ("isotropic", "axial", "sagittal", "coronal")


def join_uri(base: str, *parts: str) -> str:
    """Join URI parts with ``/`` (works for local paths and ``s3://``)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def collection_uri(root: str, name: str) -> str:
    return join_uri(root, "collections", name)


def make_obs_id(subject_id: str, collection: str) -> str:
    """Volume id: unique per subject *and* collection (image and label never collide)."""
    return f"{subject_id}_{collection}"


def local_path(uri: str) -> str | None:
    """The filesystem path of a local URI (plain path or ``file://``); ``None`` for others.

    Example:
        >>> local_path("file:///data/store"), local_path("s3://bucket/store")
        ('/data/store', None)
    """
    if "://" in uri and not uri.startswith("file://"):
        return None
    return uri[len("file://") :] if uri.startswith("file://") else uri


def drop_torn_fragments(root: str) -> int:
    """Remove zero-byte group metadata/member fragments (``__meta``/``__group``) under a
    local store: a writer killed mid-write leaves them, and TileDB then refuses to open the
    group ("Read exceeds file size"). They hold nothing; returns how many were removed."""
    import os

    path = local_path(root)
    if path is None:
        return 0
    removed = 0
    for folder, _dirs, files in os.walk(path):
        if os.path.basename(folder) not in ("__meta", "__group"):
            continue
        for name in files:
            full = os.path.join(folder, name)
            if os.path.getsize(full) == 0:
                os.remove(full)
                removed += 1
    return removed


def read_format_version(meta: dict) -> int:
    """Format version of a root group's metadata; stores written by radiobject count as 1."""
    version = int(meta.get(FORMAT_VERSION_KEY, 1))
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"store format version {version} is newer than this radiobundles understands "
            f"({FORMAT_VERSION}); upgrade radiobundles to read it"
        )
    return version


_CODECS = {"zstd": tiledb.ZstdFilter, "lz4": tiledb.LZ4Filter, "gzip": tiledb.GzipFilter}
_PRE_FILTERS = {
    "byteshuffle": tiledb.ByteShuffleFilter,
    "bitshuffle": tiledb.BitShuffleFilter,
    "delta": tiledb.DeltaFilter,
}


def compression_filters(compression: str = "zstd", level: int = 3) -> tiledb.FilterList:
    """A filter list for ``compression``: ``zstd``, ``lz4``, ``gzip`` or ``none``, optionally
    preceded by ``byteshuffle+`` / ``bitshuffle+`` / ``delta+`` (e.g. ``"byteshuffle+lz4"``).
    ``level`` goes to the codec."""
    filters = []
    for token in compression.lower().split("+"):
        token = token.strip()
        if token in ("none", ""):
            continue
        if token in _PRE_FILTERS:
            filters.append(_PRE_FILTERS[token]())
        elif token in _CODECS:
            filters.append(_CODECS[token](level=level))
        else:
            raise ValueError(
                f"unknown compression {compression!r}; use zstd, lz4, gzip or none, optionally after "
                "byteshuffle+, bitshuffle+ or delta+ (e.g. 'byteshuffle+lz4')"
            )
    return tiledb.FilterList(filters)


@dataclass(frozen=True)
class Tiling:
    """How a volume is cut into tiles.

    ``isotropic`` tiles suit random 3D patches: 32³ by default, 64³ for 1-byte volumes
    (labels), whose 64³ tiles are no bigger than an int16 32³ tile but make a 64³ patch
    8 tiles instead of 27 (0.50 vs 0.77 ms per read, benchmarks/README.md). ``axial`` tiles
    ``(X, Y, 1)`` make one axial slice one tile (2D slice training); ``sagittal`` /
    ``coronal`` likewise. ``extent`` overrides the isotropic tile size (one int or three)
    for every dtype.
    """

    strategy: str = "isotropic"
    extent: tuple[int, int, int] | int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in TILINGS:
            raise ValueError(f"unknown tiling {self.strategy!r}; use one of {', '.join(TILINGS)}")

    def extents(self, shape: Sequence[int], itemsize: int = 2) -> tuple[int, ...]:
        """Tile extents for a volume of ``shape`` whose voxels take ``itemsize`` bytes."""
        x, y, z = (int(s) for s in shape[:3])
        if self.strategy == "isotropic":
            ext = self.extent if self.extent is not None else (64 if itemsize == 1 else 32)
            ex = (ext, ext, ext) if isinstance(ext, int) else tuple(int(e) for e in ext)
        elif self.strategy == "axial":
            ex = (x, y, 1)
        elif self.strategy == "sagittal":
            ex = (1, y, z)
        else:
            ex = (x, 1, z)
        tiles = [max(1, min(int(e), s)) for e, s in zip(ex, (x, y, z))]
        return (*tiles, *([1] * (len(shape) - 3)))

    @property
    def orientation_label(self) -> str:
        # radiobject's tile_orientation values
        return {"isotropic": "isotropic", "axial": "axial", "sagittal": "sagittal", "coronal": "coronal"}[self.strategy]


def create_volume_schema(
    shape: Sequence[int],
    dtype: np.dtype,
    tiling: Tiling,
    filters: tiledb.FilterList,
    ctx: tiledb.Ctx | None = None,
) -> tiledb.ArraySchema:
    """Dense schema for one volume (3D, or 4D with a ``t`` dimension)."""
    names = ("x", "y", "z", "t")
    extents = tiling.extents(shape, itemsize=np.dtype(dtype).itemsize)
    dims = [
        tiledb.Dim(name=names[i], domain=(0, int(n) - 1), tile=int(t), dtype=np.int32, ctx=ctx)
        for i, (n, t) in enumerate(zip(shape, extents))
    ]
    if np.dtype(dtype).itemsize == 1:  # shuffling the bytes of 1-byte values changes nothing but costs a stage
        shuffles = (tiledb.ByteShuffleFilter, tiledb.BitShuffleFilter)
        filters = tiledb.FilterList([f for f in filters if not isinstance(f, shuffles)])
    attr = tiledb.Attr(name=VOXELS, dtype=np.dtype(dtype), filters=filters, ctx=ctx)
    return tiledb.ArraySchema(
        domain=tiledb.Domain(*dims, ctx=ctx),
        attrs=[attr],
        sparse=False,
        cell_order="row-major",
        tile_order="row-major",
        ctx=ctx,
    )


def affine_to_json(affine: np.ndarray) -> str:
    return json.dumps(np.asarray(affine, dtype=np.float64).tolist())


def affine_from_json(text: str) -> np.ndarray:
    return np.asarray(json.loads(text), dtype=np.float64)


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel spacing (mm) of a 4x4 affine: the lengths of its first three columns.

    The same numbers as MONAI's ``monai.data.utils.affine_to_spacing`` (which the core does not
    import, to stay free of torch).

    Example:
        >>> affine_spacing(np.diag([0.8, 0.8, 2.0, 1.0]))
        (0.8, 0.8, 2.0)
    """
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(s) for s in np.sqrt((columns**2).sum(axis=0)))  # type: ignore[return-value]


def obs_row(
    series_type: str,
    shape: Sequence[int],
    affine: np.ndarray | None = None,
    source_path: str | None = None,
    **columns: Any,
) -> dict[str, Any]:
    """A collection's ``obs`` row for one volume: the columns every writer fills, then ``columns``.

    ``series_type`` and ``dimensions`` always; with ``affine`` also ``voxel_spacing``
    (:func:`affine_spacing`), ``axcodes`` and ``affine_json``; ``source_path`` when given. The
    index columns (``obs_subject_id``, ``obs_id``) are the writer's.

    Example:
        >>> obs_row("CT", (64, 64, 40), np.diag([0.8, 0.8, 2.0, 1.0]), "/data/case_001.nii.gz")
        {'series_type': 'CT', 'dimensions': '(64, 64, 40)', 'voxel_spacing': '(0.8, 0.8, 2.0)', 'axcodes': 'RAS',
         'affine_json': '[[0.8, 0.0, 0.0, 0.0], ...]', 'source_path': '/data/case_001.nii.gz'}
    """
    row: dict[str, Any] = {"series_type": series_type, "dimensions": str(tuple(int(s) for s in tuple(shape)[:3]))}
    if affine is not None:
        import nibabel as nib  # light (no torch); imported here so the layout module stays minimal

        row["voxel_spacing"] = str(affine_spacing(affine))
        row["axcodes"] = "".join(nib.aff2axcodes(affine))
        row["affine_json"] = affine_to_json(affine)
    if source_path is not None:
        row["source_path"] = source_path
    row.update(columns)
    return row
