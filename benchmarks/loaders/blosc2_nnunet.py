"""The practical ceiling, part 2: nnU-Net v2's blosc2 ``.b2nd`` layout
(:mod:`benchmarks.blosc2_layout`), read memory-mapped with one thread as nnU-Net does."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.blosc2_layout import open_b2nd, write_b2nd
from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, RandomPatchDataset, register
from benchmarks.loaders.npy_mmap import from_nifti, simple_loader
from benchmarks.synth import DataSet, dir_size


@register
class Blosc2NnUNet(Contender):
    imports = ("torch", "blosc2")
    name = "blosc2-nnunet"
    label = "nnU-Net blosc2 .b2nd (ceiling)"
    group = "ceiling"
    store_layout = "b2nd"

    def prepare(self, ds: DataSet, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
        params: dict[str, Any] = {}

        def write(image: np.ndarray, label: np.ndarray, p_img: str, p_lbl: str) -> None:
            params["image"] = write_b2nd(image, p_img, cfg.patch)
            params["label"] = write_b2nd(label, p_lbl, cfg.patch)

        def build() -> dict[str, Any]:
            os.makedirs(ds.path("b2nd"), exist_ok=True)
            t0 = time.perf_counter()
            from_nifti(ds, write, ds.b2nd_pairs())
            return {"bytes": dir_size(ds.path("b2nd")), "build_s": time.perf_counter() - t0, "params": params}

        return ds.ensure("b2nd", build, log)

    def _openers(self, ds: DataSet):
        return [(lambda i=i, j=j: (open_b2nd(i), open_b2nd(j))) for i, j in ds.b2nd_pairs()]

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        shapes = [ds.spec.shape] * ds.spec.n_subjects
        return simple_loader(RandomPatchDataset(self._openers(ds), shapes, cfg.patch, length), cfg, num_workers)

    def open_micro(self, ds: DataSet) -> None:
        self.arrays = [o() for o in self._openers(ds)]

    def read_patch(self, subject: int, start, size) -> np.ndarray:
        return self.arrays[subject][0][tuple(slice(s, s + p) for s, p in zip(start, size))]

    def read_full(self, subject: int) -> np.ndarray:
        return self.arrays[subject][0][...]

    def read_axial(self, subject: int, z: int) -> np.ndarray:
        return self.arrays[subject][0][:, :, z]
