"""Writer leases: who is writing into a store right now.

A writer that dies leaves an unregistered, possibly half-written volume folder behind. The
next writer may delete and reuse it only if nobody else could be writing it at that
moment. Each writer therefore keeps a small lease file under ``<store>/.writers/`` with
its host, process id and a timestamp; a lease counts as alive while its process runs
(same host) or, for other hosts, until it is older than ``ttl`` seconds.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import tiledb

from radiobject_adapter.store.layout import join_uri

__all__ = ["WriterLease"]


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLease:
    """The lease of one writer; refreshed while writing, removed on :meth:`release`."""

    def __init__(self, root: str, vfs: tiledb.VFS, ttl: float = 120.0) -> None:
        self.folder = join_uri(root, ".writers")
        self.vfs = vfs
        self.ttl = ttl
        self.host = socket.gethostname()
        self.uri = join_uri(self.folder, f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self._written = 0.0

    def refresh(self) -> None:
        if time.time() - self._written < self.ttl / 4:
            return
        if not self.vfs.is_dir(self.folder):
            self.vfs.create_dir(self.folder)
        body = json.dumps({"host": self.host, "pid": os.getpid(), "time": time.time()}).encode()
        with self.vfs.open(self.uri, "wb") as fh:
            fh.write(body)
        self._written = time.time()

    def others_alive(self) -> bool:
        """True if another writer may be writing now (dead writers' leases are cleared)."""
        if not self.vfs.is_dir(self.folder):
            return False
        alive = False
        for uri in self.vfs.ls(self.folder):
            if uri.rstrip("/").endswith(self.uri.rsplit("/", 1)[1]):
                continue
            try:
                with self.vfs.open(uri, "rb") as fh:
                    lease = json.loads(fh.read(self.vfs.file_size(uri)))
            except (tiledb.TileDBError, ValueError):
                alive = True  # being written right now
                continue
            same_host = lease.get("host") == self.host
            if (same_host and _pid_running(int(lease.get("pid", -1)))) or (
                not same_host and time.time() - float(lease.get("time", 0)) < self.ttl
            ):
                alive = True
            else:
                self.vfs.remove_file(uri)
        return alive

    def release(self) -> None:
        if self._written and self.vfs.is_file(self.uri):
            self.vfs.remove_file(self.uri)
        self._written = 0.0
