"""MONAI ``PersistentDataset``: ``LoadImaged`` + ``EnsureChannelFirstd`` results cached on
disk (``torch.save``), ``RandSpatialCropd`` applied to the cached volumes every time."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, register
from benchmarks.loaders.monai_nifti import datalist, monai_loader, monai_transforms
from benchmarks.synth import DataSet, dir_size


@register
class MonaiPersistent(Contender):
    slow_loader = True
    name = "monai-persistent"
    label = "MONAI PersistentDataset (cached volumes)"
    store_layout = "persistent_cache"
    micro = False

    def cache_dir(self, ds: DataSet) -> str:
        return ds.path("persistent_cache")

    def _dataset(self, ds: DataSet, cfg: BenchConfig, length: int):
        from monai.data import PersistentDataset

        return PersistentDataset(
            datalist(ds, True, length), transform=monai_transforms(cfg.patch), cache_dir=self.cache_dir(ds)
        )

    def prepare(self, ds: DataSet, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            if os.path.exists(self.cache_dir(ds)):
                shutil.rmtree(self.cache_dir(ds))
            pds = self._dataset(ds, cfg, ds.spec.n_subjects)
            t0 = time.perf_counter()
            for i in range(len(pds)):  # fills the cache: the deterministic transforms, once per case
                pds[i]
            return {"bytes": dir_size(self.cache_dir(ds)), "build_s": time.perf_counter() - t0}

        return ds.ensure(self.store_layout, build, log)

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        return monai_loader(self._dataset(ds, cfg, length), cfg, num_workers)
