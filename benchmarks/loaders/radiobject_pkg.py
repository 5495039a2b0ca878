"""The ``radiobject`` 0.1.1 package on a store it wrote itself (``RadiObject.from_niftis``),
read by its own ML factory ``radiobject.ml.create_segmentation_dataloader``.

Known problems of 0.1.1 that the harness guards against or notes:

* DataLoader workers forked from a process that already used TileDB can hang (its
  ``worker_init_fn`` builds a new context but reads keep using the inherited global one): the
  loader gets ``timeout=`` and the contender's subprocess a wall-clock limit, so a hang is
  recorded as a failure instead of stopping the run;
* patch positions are seeded by the item index (``default_rng(seed=idx)``), so every epoch
  repeats the same patches (it does not change the cost per patch);
* every read opens and closes the array (``with tiledb.open(...)``);
* foreground sampling re-reads the mask patch up to ``foreground_max_retries`` (10) times.

Two stores are written, one per tiling radiobject offers for 3D patches: its default
``axial`` tiles (X×Y×1) and ``isotropic`` 64³ tiles, both zstd level 3 (its default codec).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, register
from benchmarks.synth import DataSet, dir_size


class _RadiObjectPkg(Contender):
    imports = ("torch", "radiobject", "radiobject.ml")
    orientation = "isotropic"
    supports_items = True

    @property
    def store_layout(self) -> str:  # type: ignore[override]
        return f"store_{self.name}"

    def uri(self, ds: DataSet) -> str:
        return ds.path(self.store_layout)

    def prepare(self, ds: DataSet, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            from radiobject import RadiObject
            from radiobject.ctx import SliceOrientation, TileConfig, WriteConfig, configure

            configure(write=WriteConfig(tile=TileConfig(orientation=SliceOrientation(self.orientation))))

            uri = self.uri(ds)
            if os.path.exists(uri):
                shutil.rmtree(uri)
            pairs = ds.nifti_pairs(True)
            images = {
                "CT": [(img, sid) for (img, _), sid in zip(pairs, ds.ids)],
                "seg": [(lbl, sid) for (_, lbl), sid in zip(pairs, ds.ids)],
            }
            t0 = time.perf_counter()
            RadiObject.from_niftis(uri, images=images)
            return {"bytes": dir_size(uri), "build_s": time.perf_counter() - t0, "tiling": self.orientation}

        return ds.ensure(self.store_layout, build, log)

    def _radi(self, ds: DataSet):
        from radiobject import RadiObject

        return RadiObject(self.uri(ds))

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        from radiobject.ml import create_segmentation_dataloader

        radi = self._radi(ds)
        ppv = max(1, -(-length // ds.spec.n_subjects))
        loader = create_segmentation_dataloader(
            image=radi.CT,
            mask=radi.seg,
            batch_size=cfg.batch_size,
            patch_size=cfg.patch,
            num_workers=num_workers,
            pin_memory=False,
            patches_per_volume=ppv,
        )
        if num_workers > 0:
            loader.timeout = cfg.batch_timeout_s  # a hung worker raises instead of blocking forever
        return loader

    # -- micro: its own Volume reads (open + read + close per call, as its dataset does) ---------
    def open_micro(self, ds: DataSet) -> None:
        from radiobject.ml.config import DatasetConfig, LoadingMode
        from radiobject.ml.datasets.segmentation_dataset import SegmentationDataset

        radi = self._radi(ds)
        self.vols = [radi.CT.iloc[i] for i in range(len(ds.ids))]
        for v in self.vols:
            _ = v.shape, v.obs_id
        cfg = DatasetConfig(loading_mode=LoadingMode.PATCH, patch_size=(64, 64, 64), patches_per_volume=10_000)
        self.ds_random = SegmentationDataset(radi.CT, radi.seg, cfg)
        self.ds_fg = SegmentationDataset(radi.CT, radi.seg, cfg, foreground_sampling=True)
        self._k = 0

    def read_patch(self, subject: int, start, size) -> np.ndarray:
        return self.vols[subject].slice(*(slice(s, s + p) for s, p in zip(start, size)))

    def read_full(self, subject: int) -> np.ndarray:
        return self.vols[subject].to_numpy()

    def read_axial(self, subject: int, z: int) -> np.ndarray:
        return self.vols[subject].axial(z)

    def item(self, foreground: bool) -> Any:
        self._k += 1
        ds = self.ds_fg if foreground else self.ds_random
        return ds[(self._k * 7919) % len(ds)]


@register
class RadiObjectIso(_RadiObjectPkg):
    name = "radiobject-iso"
    label = "radiobject 0.1.1, isotropic 64³ tiles"
    orientation = "isotropic"


@register
class RadiObjectAxial(_RadiObjectPkg):
    name = "radiobject-axial"
    label = "radiobject 0.1.1, axial tiles (its default)"
    orientation = "axial"
