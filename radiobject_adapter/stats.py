"""``TileDBStats``: what a block of code read — queries, tiles, bytes from storage, bytes decoded.

TileDB keeps these counters per process, so measure with ``num_workers=0`` (or inside a
worker). Counters are TileDB's own (``tiledb.stats_dump``); queries are counted here.

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
_active = 0


def count_query() -> None:
    """Called by every volume read; cheap when no ``TileDBStats`` is open."""
    global _queries
    if _active:
        with _lock:
            _queries += 1


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
    counters: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> TileDBStats:
        global _active, _queries
        with _lock:
            _active += 1
            self._start_queries = _queries
        tiledb.stats_enable()
        tiledb.stats_reset()
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        raw = tiledb.stats_dump(json=True, print_out=False)
        data = json.loads(raw) if isinstance(raw, str) else raw
        counters = dict(data.get("counters", {})) if isinstance(data, dict) else {}
        with _lock:
            self.queries = _queries - self._start_queries
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
        self.s3_requests = int(sum(v for k, v in counters.items() if ".S3." in k and k.endswith("_num")))
        self.s3_bytes = total("VFS.S3.read_byte_num") if any(".S3." in k for k in counters) else 0

    def summary(self) -> dict[str, int]:
        return {
            "queries": self.queries,
            "tiles_read": self.tiles_read,
            "bytes_read": self.bytes_read,
            "bytes_decoded": self.bytes_decoded,
            "read_ops": self.read_ops,
            "s3_requests": self.s3_requests,
        }
