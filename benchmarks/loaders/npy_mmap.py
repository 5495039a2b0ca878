"""The practical ceiling, part 1: memory-mapped ``.npy`` (nnU-Net v1's unpacked layout)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, RandomPatchDataset, register
from benchmarks.synth import DataSet, dir_size


def simple_loader(dataset: Any, cfg: BenchConfig, num_workers: int):
    import torch

    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def from_nifti(ds: DataSet, write: Callable[[np.ndarray, np.ndarray, str, str], None], pairs: list[tuple[str, str]]):
    """Convert the ``.nii.gz`` pairs (timed as ingest): read with nibabel, write with ``write``."""
    import nibabel as nib

    for (gz_img, gz_lbl), (out_img, out_lbl) in zip(ds.nifti_pairs(True), pairs):
        image = np.asanyarray(nib.load(gz_img).dataobj)
        label = np.asanyarray(nib.load(gz_lbl).dataobj)
        write(image, label, out_img, out_lbl)


@register
class NpyMmap(Contender):
    imports = ("torch",)
    name = "npy-mmap"
    label = "memory-mapped .npy (ceiling)"
    group = "ceiling"
    store_layout = "npy"

    def prepare(self, ds: DataSet, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            os.makedirs(ds.path("npy"), exist_ok=True)
            t0 = time.perf_counter()
            from_nifti(ds, lambda img, lbl, pi, pl: (np.save(pi, img), np.save(pl, lbl)), ds.npy_pairs())
            return {"bytes": dir_size(ds.path("npy")), "build_s": time.perf_counter() - t0}

        return ds.ensure("npy", build, log)

    def _openers(self, ds: DataSet):
        return [(lambda i=i, j=j: (np.load(i, mmap_mode="r"), np.load(j, mmap_mode="r"))) for i, j in ds.npy_pairs()]

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        shapes = [ds.spec.shape] * ds.spec.n_subjects
        return simple_loader(RandomPatchDataset(self._openers(ds), shapes, cfg.patch, length), cfg, num_workers)

    def open_micro(self, ds: DataSet) -> None:
        self.arrays = [o() for o in self._openers(ds)]

    def read_patch(self, subject: int, start, size) -> np.ndarray:
        return np.array(self.arrays[subject][0][tuple(slice(s, s + p) for s, p in zip(start, size))])

    def read_full(self, subject: int) -> np.ndarray:
        return np.load(self.arrays[subject][0].filename)

    def read_axial(self, subject: int, z: int) -> np.ndarray:
        return np.array(self.arrays[subject][0][:, :, z])
