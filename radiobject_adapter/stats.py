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

Example:
    >>> with TileDBStats() as stats:
    ...     vol[0:64, 0:64, 0:64]
    >>> stats.queries, stats.tiles_read, stats.bytes_read, stats.bytes_decoded
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import tiledb

__all__ = ["TileDBStats", "count_query"]

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
    counters: dict[str, Any] = field(default_factory=dict)

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
        global _active
        try:
            raw = tiledb.stats_dump(json=True, print_out=False)
        except IndexError:  # TileDB-Py 0.36 fails on an empty dump: nothing was read inside the block
            raw = {}
        data = json.loads(raw) if isinstance(raw, str) else raw
        counters = dict(data.get("counters", {})) if isinstance(data, dict) else {}
        with _lock:
            self.queries = _queries - self._start_queries
            s3_queries = _s3_queries - self._start_s3_queries
            _active -= 1
        if not _active:
            tiledb.stats_disable()
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
