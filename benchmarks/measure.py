"""Timing and memory helpers shared by the loader runs and the micro benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np


def percentile(values: Iterable[float], q: float) -> float | None:
    v = list(values)
    return float(np.percentile(v, q)) if v else None


def tree_cpu_s(proc: Any = None) -> float:
    """CPU seconds (user + system) of this process and all its descendants, including those
    already reaped (a DataLoader's per-epoch workers, TorchIO's subject loaders)."""
    import psutil

    p = proc or psutil.Process()
    total = sum(p.cpu_times()[:4])  # user, system, children_user, children_system (reaped)
    for c in p.children(recursive=True):
        try:
            total += sum(c.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


class MemoryMonitor:
    """Polls the resident memory of this process plus its children; keeps the peak.

    ``peak_rss_mb`` sums RSS (pages shared by forked workers count once per process, as
    ``top`` shows them); ``peak_pss_mb`` sums PSS (shared pages split between sharers), the
    fairer figure for forked DataLoader workers. RSS is polled every ``interval`` s (cheap);
    PSS (``smaps_rollup``, costly for big processes) only when RSS reaches a new high, at most
    every ``pss_every`` s. ``cpu_s`` is the CPU time the monitor itself used, so that callers can
    leave it out of the CPU time they attribute to the loader.
    """

    def __init__(self, interval: float = 0.2, pss_every: float = 2.0) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.pss_every = pss_every
        self._last_pss_t = 0.0
        self.cpu_s = 0.0
        self.peak_rss = 0
        self.peak_pss = 0
        self._last_pss_at = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _procs(self) -> list:
        import psutil

        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return [self.proc]

    def _sample(self, force_pss: bool = False) -> None:
        import psutil

        procs = self._procs()
        rss = 0
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss = max(self.peak_rss, rss)
        due = time.monotonic() - self._last_pss_t > self.pss_every
        if force_pss or (due and rss > 1.05 * self._last_pss_at):
            self._last_pss_at = rss
            self._last_pss_t = time.monotonic()
            pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    pss += getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t0 = time.thread_time()
            self._sample()
            self.cpu_s += time.thread_time() - t0

    def __enter__(self) -> MemoryMonitor:
        self._sample(force_pss=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(force_pss=True)

    def result(self) -> dict[str, float]:
        return {"peak_rss_mb": self.peak_rss / 2**20, "peak_pss_mb": self.peak_pss / 2**20}


def _batches(make_iter: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Batches forever: a new epoch starts when one ends."""
    while True:
        it = make_iter()
        got = False
        for b in it:
            got = True
            yield b
        if not got:
            raise RuntimeError("the loader produced no batch")


def check_batch(batch: Any, batch_size: int, patch: tuple[int, int, int]) -> None:
    image = batch["image"]
    if isinstance(image, dict):  # TorchIO: {"data": tensor, ...}
        image = image["data"]
    shape = tuple(image.shape)
    if shape != (batch_size, 1, *patch):
        raise AssertionError(f"unexpected image batch shape {shape}")
