"""One module per contender. Each defines :class:`Contender` subclasses registered here.

A contender knows how to build its on-disk layout from a :class:`benchmarks.synth.DataSet`
(timed: ingest), how to make a batch-4 loader of random 64³ image+label patches, and how to
read single patches, whole volumes and axial slices for the micro benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.synth import DataSet


class Contender:
    name: str = ""
    label: str = ""
    group: str = "baseline"  # ours | baseline | ceiling
    store_layout: str | None = None  # manifest layout name whose bytes count as on-disk size
    has_loader: bool = True
    micro: bool = True  # takes part in the micro benchmarks
    isolate: bool = True  # run its loader in its own process

    # -- set-up (called in the process that measures) -------------------------------------------
    imports: tuple[str, ...] = ("torch", "monai.data", "monai.transforms")

    def warm_imports(self) -> None:
        """Import the heavy modules up front (servers start in parallel; timings exclude it)."""
        import importlib

        for m in self.imports:
            importlib.import_module(m)

    def setup_process(self) -> None:
        """Process-wide settings (e.g. tuning patches); called once, first."""

    def prepare(self, ds: DataSet, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
        """Build (or find) the layout; returns its manifest info (bytes, build_s)."""
        return ds.layout(self.store_layout) if self.store_layout else {}

    def bytes_on_disk(self, ds: DataSet) -> int | None:
        info = ds.layout(self.store_layout) if self.store_layout else None
        return None if info is None else int(info["bytes"])

    # -- loaders ------------------------------------------------------------------------------------
    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        raise NotImplementedError

    slow_loader: bool = False  # seconds per batch: one batch per window is enough

    def min_batches(self, cfg: BenchConfig, ds: DataSet) -> int:
        """Fewest batches in one timing window (TorchIO: a whole queue cycle)."""
        return 1 if self.slow_loader else cfg.min_batches_per_repeat

    def background_work(self, num_workers: int) -> bool:
        """Whether an idle loader keeps working (worker processes prefetching)."""
        return num_workers > 0

    # -- micro ----------------------------------------------------------------------------------------
    def open_micro(self, ds: DataSet) -> None:
        """Open whatever the micro reads need (arrays, datasets)."""

    def read_patch(self, subject: int, start: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
        raise NotImplementedError

    def read_full(self, subject: int) -> np.ndarray:
        raise NotImplementedError

    def read_axial(self, subject: int, z: int) -> np.ndarray:
        raise NotImplementedError

    def item(self, foreground: bool) -> Any:
        """One dataset item (image+label patch) with uniform or foreground-driven position."""
        raise NotImplementedError

    supports_items: bool = False
    slow_patch: bool = False  # a patch costs a full decompression: few reads only


REGISTRY: dict[str, Callable[[], Contender]] = {}


def register(cls: type[Contender]) -> type[Contender]:
    REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, Callable[[], Contender]]:
    from benchmarks.loaders import (  # noqa: F401
        blosc2_nnunet,
        monai_nifti,
        monai_persistent,
        npy_mmap,
        ours,
        radiobject_pkg,
        torchio_queue,
    )

    return REGISTRY


def get(name: str) -> Contender:
    load_all()
    return REGISTRY[name]()


class RandomPatchDataset:
    """Random image+label patches from per-subject array openers (npy / b2nd ceilings).

    Mirrors what nnU-Net's loader does before augmentation: pick a case, pick a uniform
    random start, slice the memory-mapped image and label, convert the image to float32.
    Fresh positions every call, different in every worker (seeded from torch's worker seed).
    """

    def __init__(
        self,
        openers: list[Callable[[], tuple[Any, Any]]],
        shapes: list[tuple[int, ...]],
        patch: tuple[int, int, int],
        length: int,
    ) -> None:
        self.openers, self.shapes, self.patch, self.length = openers, shapes, patch, length
        self._open: dict[int, tuple[Any, Any]] = {}
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return self.length

    def _arrays(self, i: int) -> tuple[Any, Any]:
        if i not in self._open:
            self._open[i] = self.openers[i]()
        return self._open[i]

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        if self._rng is None:
            self._rng = np.random.default_rng(torch.initial_seed() % 2**32)
        i = index % len(self.openers)
        shape = self.shapes[i]
        start = [int(self._rng.integers(0, max(1, n - p + 1))) for n, p in zip(shape, self.patch)]
        box = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
        img, lbl = self._arrays(i)
        image = np.asarray(img[box], dtype=np.float32)
        label = np.ascontiguousarray(lbl[box])
        return {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label)[None]}
