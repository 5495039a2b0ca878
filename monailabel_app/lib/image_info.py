"""Per-image information (active-learning scores, when an image was served) in one JSON file.

MONAI Label's scoring runs in a subprocess and writes scores through the datastore; the
server reads them to pick the next sample. The file in the app's workspace is shared by
both: every update is a locked read-modify-write followed by an atomic rename, so readers
never see half a file and concurrent updates are never lost.

Example:
    >>> infos = ImageInfoStore("/app/workspace/image_info.json")
    >>> infos.update("case_000", {"epistemic_entropy": 0.31})
    >>> infos.get("case_000")["epistemic_entropy"]
    0.31
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from filelock import FileLock

__all__ = ["ImageInfoStore"]


class ImageInfoStore:
    """``{image id: {key: value}}`` persisted as JSON, safe across processes."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._lock = FileLock(f"{self.path}.lock")
        self._cache: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[int, int, int] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every write is a new inode
        if stamp != self._stamp:
            with open(self.path) as fh:
                self._cache = json.load(fh)
            self._stamp = stamp
        return self._cache

    def all(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._load())

    def get(self, image_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._load().get(image_id, {}))

    def update(self, image_id: str, info: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``info`` into the image's entry; returns the new entry."""
        with self._lock:
            self._stamp = None  # re-read under the lock: another process may have written
            data = copy.deepcopy(self._load())
            entry = {**data.get(image_id, {}), **json.loads(json.dumps(dict(info), default=str))}
            data[image_id] = entry
            tmp = f"{self.path}.tmp-{os.getpid()}"
            with open(tmp, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        return copy.deepcopy(entry)
