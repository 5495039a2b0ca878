"""``TileDBStats``: what a block of code read — queries, tiles, bytes from storage, bytes decoded.

TileDB keeps these counters per process, so measure with ``num_workers=0`` (or inside a
worker). Counters are TileDB's own (``tiledb.stats_dump``); queries are counted here.

libtiledb (2.30) has no per-backend request counters: its only S3 counter is
``VFS.S3.vfs_s3_slow_down_retries``. ``s3_requests`` / ``s3_bytes`` are therefore the VFS
operations (reads, size and existence checks) and the bytes read through the VFS, reported
when the block read a volume on ``s3://``. They count what TileDB asked of the VFS, which
equals HTTP traffic only roughly: reads served by the VFS read-ahead cache
(``vfs.read_ahead_size``, 100 KB) count without a request; S3 listings, retries and the
read-ahead itself make requests and bytes not counted.

radiobject's accessors work too: ``cache_stats()`` (``.hit_rate``), ``s3_stats()``
(``.parallelization_rate``), ``all_counters()``, ``counters()`` and ``raw_json()``. They read
the same TileDB counters radiobject reads; libtiledb 2.26+ has no tile cache, so
``hit_rate`` is that of the tile-overlap cache of repeated subarrays, and libtiledb counts
no parallelised reads, so ``parallelization_rate`` is 0.0 (as in radiobject).

Example:
    >>> with TileDBStats() as stats:
    ...     vol[0:64, 0:64, 0:64]
    >>> stats.queries, stats.tiles_read, stats.bytes_read, stats.bytes_decoded
    >>> stats.cache_stats().hit_rate, stats.s3_stats().read_ops
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import tiledb

__all__ = ["CacheStats", "S3Stats", "TileDBStats", "count_query"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_queries = 0
_s3_queries = 0
_active = 0


def count_query(uri: str | None = None) -> None:
    """Called by every volume read (with the array URI); cheap when no ``TileDBStats`` is open."""
    global _queries, _s3_queries
    if _active:
        with _lock:
            _queries += 1
            if uri is not None and uri.startswith("s3://"):
                _s3_queries += 1


@dataclass(frozen=True)
class CacheStats:
    """radiobject's cache figures (see the module docstring for what they count)."""

    cache_hits: int
    cache_misses: int
    tile_bytes_read: int
    vfs_read_bytes: int

    @property
    def hit_rate(self) -> float:
        total = self.cache_hits + self.cache_misses
        return self.cache_hits / total if total else 0.0

    @property
    def miss_rate(self) -> float:
        return 1.0 - self.hit_rate


@dataclass(frozen=True)
class S3Stats:
    """radiobject's VFS figures: read / write operations and bytes (local files included)."""

    read_ops: int
    parallelized_reads: int
    write_ops: int
    total_bytes_read: int
    total_bytes_written: int

    @property
    def parallelization_rate(self) -> float:
        return self.parallelized_reads / self.read_ops if self.read_ops else 0.0


class _Counters(dict):
    """TileDB's counters by full name (a dict, as before); calling it, as radiobject's
    ``stats.counters()``, gives them by short name (the part after the last dot)."""

    def __call__(self) -> dict[str, int]:
        short: dict[str, int] = {}
        for key, value in self.items():
            short.setdefault(key.rsplit(".", 1)[-1], value)
        return short


def _dump() -> str:
    """TileDB's stats as JSON text; ``"{}"`` when the block ran no query (TileDB-Py's
    ``stats_dump`` then fails with ``IndexError``)."""
    try:
        raw = tiledb.stats_dump(json=True, print_out=False)
    except (IndexError, tiledb.TileDBError):
        log.debug("TileDB stats_dump returned no data")
        return "{}"
    return raw if isinstance(raw, str) else json.dumps(raw)


@dataclass
class TileDBStats:
    """Context manager collecting TileDB read statistics of this process."""

    queries: int = 0
    tiles_read: int = 0
    bytes_read: int = 0
    bytes_decoded: int = 0
    read_ops: int = 0
    s3_requests: int = 0
    s3_bytes: int = 0
    s3_slow_down_retries: int = 0
    counters: dict[str, Any] = field(default_factory=_Counters)
    _raw: str = field(default="{}", repr=False)

    def __enter__(self) -> TileDBStats:
        global _active, _queries
        with _lock:
            _active += 1
            self._start_queries = _queries
            self._start_s3_queries = _s3_queries
        tiledb.stats_enable()
        tiledb.stats_reset()
        return self

    def __exit__(self, *exc: object) -> None:
        # Never raises: an exception of the block propagates unchanged.
        global _active
        try:
            raw = _dump()
            data = json.loads(raw)
        except ValueError:
            raw, data = "{}", {}
        finally:
            with _lock:
                self.queries = _queries - self._start_queries
                s3_queries = _s3_queries - self._start_s3_queries
                _active -= 1
                if not _active:
                    tiledb.stats_disable()
        self._raw = raw
        counters = _Counters(data.get("counters", {}) if isinstance(data, dict) else {})
        self.counters = counters

        def total(suffix: str) -> int:
            return int(sum(v for k, v in counters.items() if k.endswith(suffix)))

        self.tiles_read = total("Reader.num_tiles_read")
        self.bytes_read = total("VFS.read_byte_num")
        self.read_ops = total("VFS.read_ops_num")
        self.bytes_decoded = total("Reader.read_unfiltered_byte_num")
        # VFS operations: Context.VFS.{read_ops,file_size,is_object,ls,...}_num (not *_byte_num)
        vfs_ops = sum(
            int(v)
            for k, v in counters.items()
            if k.split(".")[-2:-1] == ["VFS"] and k.endswith("_num") and not k.endswith("_byte_num")
        )
        self.s3_requests = vfs_ops if s3_queries else 0
        self.s3_bytes = self.bytes_read if s3_queries else 0
        self.s3_slow_down_retries = total("VFS.S3.vfs_s3_slow_down_retries")

    def summary(self) -> dict[str, int]:
        return {
            "queries": self.queries,
            "tiles_read": self.tiles_read,
            "bytes_read": self.bytes_read,
            "bytes_decoded": self.bytes_decoded,
            "read_ops": self.read_ops,
            "s3_requests": self.s3_requests,
            "s3_bytes": self.s3_bytes,
            "s3_slow_down_retries": self.s3_slow_down_retries,
        }

    # -- radiobject's accessors ------------------------------------------------------------
    def raw_json(self) -> str:
        """TileDB's stats of the block as JSON text (``"{}"`` if it ran no query)."""
        return self._raw

    def all_counters(self) -> dict[str, Any]:
        """Every TileDB counter of the block by full name."""
        return dict(self.counters)

    def _counter(self, suffix: str) -> int:
        return int(sum(v for k, v in self.counters.items() if k.endswith(suffix)))

    def cache_stats(self) -> CacheStats:
        """radiobject's cache figures (tile-overlap cache hits; see the module docstring)."""
        return CacheStats(
            cache_hits=self._counter("tile_overlap_cache_hit"),
            cache_misses=0,
            tile_bytes_read=self._counter("read_unfiltered_byte_num"),
            vfs_read_bytes=self._counter("VFS.read_byte_num"),
        )

    def s3_stats(self) -> S3Stats:
        """radiobject's VFS figures (local reads count too; see the module docstring)."""
        return S3Stats(
            read_ops=self._counter("VFS.read_ops_num"),
            parallelized_reads=0,
            write_ops=self._counter("VFS.write_ops_num"),
            total_bytes_read=self._counter("VFS.read_byte_num"),
            total_bytes_written=self._counter("VFS.write_byte_num"),
        )
