"""A ``BundleInferTask`` that is safe to use from several threads at once.

MONAI Label 0.8.5's ``BundleInferTask`` puts the bundle folder on ``sys.path`` and takes it
off again around its construction and every config lookup (``pre_transforms``, ``inferer``, ``post_transforms``,
``detector``). An inference request and a scoring run (MC-dropout passes in another thread)
interleave those pairs, and one thread's ``sys.path.remove`` fails with
``ValueError: list.remove(x): x not in list`` (seen as HTTP 500 from ``/infer``). One
process-wide lock around each pair keeps them whole.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from monailabel.tasks.infer.bundle import BundleInferTask

__all__ = ["ThreadSafeBundleInferTask"]

_SYS_PATH_LOCK = threading.RLock()


class ThreadSafeBundleInferTask(BundleInferTask):
    """``BundleInferTask`` whose ``sys.path`` juggling is serialised across threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with _SYS_PATH_LOCK:  # the constructor inserts and removes the bundle path too
            super().__init__(*args, **kwargs)
            # MONAI Label's training task does the same insert/remove pairs without our lock;
            # one standing copy at the end of sys.path means no remove can ever miss.
            if self.bundle_path and self.bundle_path not in sys.path:
                sys.path.append(self.bundle_path)

    def pre_transforms(self, data: Any = None) -> Any:
        with _SYS_PATH_LOCK:
            return super().pre_transforms(data)

    def inferer(self, data: Any = None) -> Any:
        with _SYS_PATH_LOCK:
            return super().inferer(data)

    def detector(self, data: Any = None) -> Any:
        with _SYS_PATH_LOCK:
            return super().detector(data)

    def post_transforms(self, data: Any = None) -> Any:
        with _SYS_PATH_LOCK:
            return super().post_transforms(data)
