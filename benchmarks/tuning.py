"""Prototype of the read/write changes proposed for ``radiobject_adapter`` (see README).

Everything here is applied by monkey-patching, only inside benchmark processes, so that the
"ours-tuned" contender measures exactly what the proposed diff would make the default:

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
   (:class:`ThreadedBatches`, the proposed ``make_dataloader(..., threads=)``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tiledb

TUNED_TILE = 32
TUNED_COMPRESSION = "byteshuffle+lz4"
TUNED_LEVEL = 1
TUNED_THREADS = 2
TUNED_SETTINGS = {"sm.mem.malloc_trim": "false", "vfs.min_batch_gap": "0", "vfs.min_batch_size": "0"}

_applied = False


# -- write side: filter pipelines ---------------------------------------------------------------
def filters_for(spec: str, level: int = 3) -> tiledb.FilterList:
    """A filter list from ``"zstd"``, ``"lz4"``, ``"none"``, or a ``+``-joined pipeline such
    as ``"byteshuffle+lz4"`` / ``"bitshuffle+zstd"`` / ``"delta+zstd"`` (level → the codec)."""
    out: list[Any] = []
    for token in spec.lower().split("+"):
        token = token.strip()
        if token in ("none", ""):
            continue
        if token == "byteshuffle":
            out.append(tiledb.ByteShuffleFilter())
        elif token == "bitshuffle":
            out.append(tiledb.BitShuffleFilter())
        elif token == "delta":
            out.append(tiledb.DeltaFilter())
        elif token == "zstd":
            out.append(tiledb.ZstdFilter(level=level))
        elif token == "lz4":
            out.append(tiledb.LZ4Filter(level=level))
        elif token == "gzip":
            out.append(tiledb.GzipFilter(level=level))
        else:
            raise ValueError(f"unknown filter {token!r} in {spec!r}")
    return tiledb.FilterList(out)


# -- process-wide allocator ---------------------------------------------------------------------
def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """glibc only: keep freed memory for reuse (no-op elsewhere). Returns whether it applied."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, int(mmap_threshold)) == 1
        return ok and libc.mallopt(m_trim_threshold, int(trim_threshold)) == 1
    except (OSError, AttributeError):
        return False


# -- read side: direct query ---------------------------------------------------------------------
def direct_reader(arr: tiledb.Array):
    """``read(bounds) -> ndarray`` for an open dense array, through one libtiledb query per call."""
    import tiledb.libtiledb as lt

    ctx = lt.Context(arr.ctx)
    attr = arr.schema.attr(0)
    name = attr._internal_name
    dtype = attr.dtype

    def read(bounds: Sequence[tuple[int, int]]) -> np.ndarray:
        out = np.empty([hi - lo for lo, hi in bounds], dtype=dtype)
        q = lt.Query(ctx, arr.array, lt.QueryType.READ)
        q.layout = lt.LayoutType.ROW_MAJOR
        sub = lt.Subarray(ctx, arr.array)
        for i, (lo, hi) in enumerate(bounds):
            sub._add_dim_range(i, (int(lo), int(hi) - 1))
        q.set_subarray(sub)
        q.set_data_buffer(name, out, out.size)
        status = q._submit()
        if status != lt.QueryStatus.COMPLETE:  # cannot happen for an exact dense buffer; be safe
            sl = tuple(slice(lo, hi) for lo, hi in bounds)
            return arr.query(attrs=(name,))[sl][name]
        return out

    return read


def _patched_read_box(self, bounds):  # replaces radiobject_adapter.volume.Volume.read_box
    import time

    from radiobject_adapter import volume as volume_mod
    from radiobject_adapter.config import current_settings, forget_array, open_array
    from radiobject_adapter.stats import count_query

    for (lo, hi), n in zip(bounds, self.shape):
        if lo < 0 or hi > n or lo > hi:
            raise IndexError(f"box {list(bounds)} outside volume of shape {self.shape}")
    if any(lo == hi for lo, hi in bounds):
        return np.zeros([hi - lo for lo, hi in bounds], dtype=self.dtype)
    settings = current_settings().read
    retries = getattr(settings, "retries", 0)
    for attempt in range(retries + 1):
        count_query(self.uri)
        try:
            try:  # no retries inside open_array: this loop is the retry (and reopens)
                arr = open_array(self.uri, self.timestamp, retry=False)
            except TypeError:  # an adapter without the retry flag
                arr = open_array(self.uri, self.timestamp)
            reader = getattr(arr, "_rb_direct_reader", None)
            if reader is None:
                reader = direct_reader(arr)
                try:
                    arr._rb_direct_reader = reader  # cached on the (per-process cached) open array
                except AttributeError:
                    pass
            return reader(bounds)
        except tiledb.TileDBError as err:  # same retry policy as the current read_box
            if attempt == retries:
                error = getattr(volume_mod, "VolumeReadError", RuntimeError)
                raise error(f"reading {self.uri} failed after {attempt + 1} attempt(s): {err}") from err
            forget_array(self.uri)
            time.sleep(getattr(settings, "retry_backoff_s", 0.25) * 2**attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _noop() -> Iterator[None]:
    yield


def schema_without_useless_shuffle(create):
    """Wrap ``create_volume_schema``: no byte/bit shuffle for 1-byte types."""

    def create_volume_schema(shape, dtype, tiling, filters, ctx=None):
        if np.dtype(dtype).itemsize == 1:
            shuffles = (tiledb.ByteShuffleFilter, tiledb.BitShuffleFilter)
            filters = tiledb.FilterList([f for f in filters if not isinstance(f, shuffles)])
        return create(shape, dtype, tiling, filters, ctx=ctx)

    create_volume_schema._rb_tuned = True  # type: ignore[attr-defined]
    return create_volume_schema


class ThreadedBatches:
    """A map-style dataset of whole batches: ``ds[[i, j, k, l]]`` reads the items in a thread
    pool and collates them (MONAI's ``list_data_collate``). Use with
    ``DataLoader(ThreadedBatches(ds, 2), batch_size=None, sampler=BatchSampler(...))``."""

    def __init__(self, dataset: Any, threads: int = 2) -> None:
        self.dataset, self.threads = dataset, threads
        self._pool = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int]) -> Any:
        import os
        from concurrent.futures import ThreadPoolExecutor

        from monai.data import list_data_collate

        if self._pool is None or self._pid != os.getpid():  # one pool per (worker) process
            self._pool, self._pid = ThreadPoolExecutor(self.threads), os.getpid()
        return list_data_collate(list(self._pool.map(self.dataset.__getitem__, indices)))


def _identity(batch: Any) -> Any:
    return batch


def threaded_loader(dataset: Any, batch_size: int, shuffle: bool, num_workers: int, threads: int = 2, **kw: Any):
    """The proposed ``make_dataloader(..., threads=n)``: batches read by ``threads`` threads."""
    from monai.data import DataLoader
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        ThreadedBatches(dataset, threads),
        batch_size=None,
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=_identity,
        **kw,
    )


def apply(read: bool = True, write: bool = True, allocator: bool = True, concurrency: int = 1) -> None:
    """Patch ``radiobject_adapter`` in this process (and the DataLoader workers it forks)."""
    global _applied
    import radiobject_adapter.config as cfg
    import radiobject_adapter.store.writer as writer
    import radiobject_adapter.volume as volume

    if write:
        writer.compression_filters = filters_for
        if not getattr(writer.create_volume_schema, "_rb_tuned", False):
            writer.create_volume_schema = schema_without_useless_shuffle(writer.create_volume_schema)
    if read:
        original = cfg.tiledb_config

        def tiledb_config(settings=None):  # type: ignore[no-untyped-def]
            c = original(settings)
            for k, v in TUNED_SETTINGS.items():
                c[k] = v
            return c

        if not getattr(cfg.tiledb_config, "_rb_tuned", False):
            tiledb_config._rb_tuned = True  # type: ignore[attr-defined]
            cfg.tiledb_config = tiledb_config
        volume.Volume.read_box = _patched_read_box
        cfg.configure(read=cfg.ReadConfig(concurrency=concurrency))
    if allocator:
        tune_allocator()
    _applied = True


def tuned_store_kwargs() -> dict:
    return {
        "tiling": "isotropic",
        "tile_extent": TUNED_TILE,
        "compression": TUNED_COMPRESSION,
        "compression_level": TUNED_LEVEL,
    }
