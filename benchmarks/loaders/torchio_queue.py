"""TorchIO: ``SubjectsDataset`` of ``.nii.gz`` subjects, ``tio.Queue`` with a
``UniformSampler`` (8 patches per loaded volume, queue of 32), batch 4. The queue's own
workers (``num_workers``) load subjects; the outer DataLoader has none, as TorchIO advises."""

from __future__ import annotations

from typing import Any

from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, register
from benchmarks.synth import DataSet

SAMPLES_PER_VOLUME = 8
MAX_LENGTH = 32


@register
class TorchioQueue(Contender):
    imports = ("torch", "torchio")
    name = "torchio-queue"
    label = f"TorchIO Queue .nii.gz ({SAMPLES_PER_VOLUME} patches/volume)"
    store_layout = "nii_gz"
    micro = False

    def min_batches(self, cfg: BenchConfig, ds: DataSet) -> int:
        # one epoch of the queue: every subject loaded once, its patches served
        return max(cfg.min_batches_per_repeat, -(-ds.spec.n_subjects * SAMPLES_PER_VOLUME // cfg.batch_size))

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        import torch
        import torchio as tio

        subjects = [tio.Subject(image=tio.ScalarImage(i), label=tio.LabelMap(j)) for i, j in ds.nifti_pairs(True)]
        queue = tio.Queue(
            tio.SubjectsDataset(subjects),
            max_length=MAX_LENGTH,
            samples_per_volume=SAMPLES_PER_VOLUME,
            sampler=tio.UniformSampler(cfg.patch),
            num_workers=num_workers,
            shuffle_subjects=True,
            shuffle_patches=True,
            verbose=False,
        )
        return torch.utils.data.DataLoader(queue, batch_size=cfg.batch_size, num_workers=0)
