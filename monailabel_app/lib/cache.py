"""NIfTI files converted from store volumes, cached in the app's workspace.

3D Slicer downloads images and labels as files, and MONAI Label's infer tasks read files. A
volume is converted once per version: the cache key is the array URI plus the timestamp of
its newest fragment, so a volume rewritten in the store (a new label version, a re-ingested
image) gets a new file, and an unchanged one is never converted twice. Files appear
atomically (written aside, then renamed), so the server and its training and scoring
subprocesses can share the cache. A SHA-256 is stored next to each file: Slicer verifies
downloads against the ``checksum`` MONAI Label reports.

Example:
    >>> cache = NiftiCache("/app/workspace/cache")
    >>> path = cache.get("images", uri, version, "case_000.nii.gz", lambda p: Volume(uri).to_nifti(p))
    >>> cache.checksum(path)
    'SHA256:9f2c...'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable

from monailabel_app.lib.conf import app_settings

__all__ = ["NiftiCache"]

# the newest and the one before: a download that just started stays valid (configs/monailabel_app.yaml)
_KEEP_VERSIONS = int(app_settings()["limits"]["cache_versions_kept"])


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class NiftiCache:
    """Versioned file cache: ``<root>/<kind>/<uri hash>/<version>/<name>``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _folder(self, kind: str, uri: str) -> str:
        return os.path.join(self.root, kind, hashlib.sha1(uri.encode()).hexdigest()[:16])

    def path(self, kind: str, uri: str, version: int, name: str) -> str:
        return os.path.join(self._folder(kind, uri), str(int(version)), name)

    def lookup(self, kind: str, uri: str, version: int, name: str) -> str | None:
        """The cached file, or ``None`` if this version was not converted yet."""
        path = self.path(kind, uri, version, name)
        return path if os.path.isfile(path) else None

    def get(self, kind: str, uri: str, version: int, name: str, convert: Callable[[str], object]) -> str:
        """The cached file of ``uri`` at ``version``; ``convert(path)`` writes it when missing."""
        path = self.path(kind, uri, version, name)
        if os.path.isfile(path):
            return path
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}-{name}")  # keeps the extension for nibabel
        try:
            convert(tmp)
            sha_tmp = f"{tmp}.sha256"
            with open(sha_tmp, "w") as fh:
                fh.write(_digest(tmp))
            os.replace(sha_tmp, f"{path}.sha256")
            os.replace(tmp, path)
        finally:
            for leftover in (tmp, f"{tmp}.sha256"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        self._prune(os.path.dirname(folder))
        return path

    def checksum(self, path: str) -> str | None:
        """``"SHA256:<hex>"`` of a cached file (as 3D Slicer's downloader expects), if known."""
        try:
            with open(f"{path}.sha256") as fh:
                return f"SHA256:{fh.read().strip()}"
        except OSError:
            return None

    @staticmethod
    def _prune(volume_folder: str) -> None:
        versions = sorted((int(v) for v in os.listdir(volume_folder) if v.isdigit()), reverse=True)
        for old in versions[_KEEP_VERSIONS:]:
            shutil.rmtree(os.path.join(volume_folder, str(old)), ignore_errors=True)
