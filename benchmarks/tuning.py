"""Helpers for the lever experiments (:mod:`benchmarks.levers`), which measure raw TileDB
arrays outside ``radiobject_adapter``. The winners are now ``radiobject_adapter``'s defaults
(``config.ReadConfig``/``WriteConfig``, ``Volume.read_box``, ``DatasetConfig.read_threads``):

1. TileDB settings for patch reads (``tiledb_config``):
   ``sm.mem.malloc_trim=false`` (libtiledb otherwise calls ``malloc_trim`` when every query is
   destroyed, so the next query page-faults all its tile buffers in again),
   ``vfs.min_batch_size=0`` + ``vfs.min_batch_gap=0`` (by default libtiledb merges the tile
   reads of one query into batches of up to 20 MB, gaps included: a 64³ read over 32³ tiles
   then fetches ~11 MB instead of 1.7 MB; both settings are needed), and one TileDB thread per
   process (``ReadConfig(concurrency=1)``;
   the DataLoader workers are the parallelism, and hand-offs to TileDB's pools cost more than
   they give on two busy cores).
2. ``mallopt`` (glibc): keep freed heap memory instead of returning it to the kernel after
   every read (``M_MMAP_THRESHOLD`` 32 MiB, ``M_TRIM_THRESHOLD`` 256 MiB).
3. ``Volume.read_box`` submits a ``tiledb.libtiledb.Query`` straight into a preallocated
   NumPy buffer instead of ``arr.query(attrs=...)[...]`` (which estimates result sizes,
   allocates, and copies again).
4. Write side: 32³ tiles and a ``byteshuffle+lz4`` filter pipeline (compression strings may
   name a pipeline, ``"byteshuffle+lz4"``, ``"bitshuffle+zstd"``, ...); shuffle filters are
   dropped for 1-byte types (uint8 labels), where they change nothing but cost a filter stage
   (+0.5 ms per 64³ label read).
5. Threads inside a loader process: the items of one batch are read by a small thread pool
   (TileDB releases the GIL while it reads), ``threads=2`` by default
   (``DatasetConfig.read_threads``, through ``TileDBDataset.__getitems__``).
"""

from __future__ import annotations

import tiledb

TUNED_SETTINGS = {"sm.mem.malloc_trim": "false", "vfs.min_batch_gap": "0", "vfs.min_batch_size": "0"}


def direct_reader(arr: tiledb.Array):
    """``read(bounds) -> ndarray`` for an open dense array with a ``voxels`` attribute, through
    one libtiledb query per call (``Volume.read_box``'s read, without its retries)."""
    from radiobject_adapter.volume import _direct_read

    dtype = arr.schema.attr(0).dtype
    return lambda bounds: _direct_read(arr, bounds, dtype)
