"""Our TileDB store (radiobject_adapter) with its defaults (isotropic 32³ tiles,
byteshuffle+lz4, direct reads, 2 read threads per loader process), with axial tiles, and
"ours-v0": the settings before the benchmark-driven tuning (64³ zstd-3 tiles, TileDB-Py
``arr.query`` reads, libtiledb's read batching and ``malloc_trim``, one item at a time), so
every run shows what the tuning gives on the same machine. All three are plain options of
``radiobject_adapter`` (``ReadConfig``, ingest arguments, ``DatasetConfig.read_threads``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, register
from benchmarks.synth import DataSet, dir_size


class _Ours(Contender):
    group = "ours"
    imports = ("torch", "monai.data", "radiobject_adapter")
    ingest_kwargs: dict[str, Any] = {}
    read_threads = 2  # DatasetConfig default

    @property
    def store_layout(self) -> str:  # type: ignore[override]
        return f"store_{self.name}"

    def setup_process(self) -> None:
        os.environ.setdefault("TQDM_DISABLE", "1")

    def store_uri(self, ds: DataSet) -> str:
        return ds.path(self.store_layout)

    def prepare(self, ds: DataSet, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            import shutil

            from radiobject_adapter import ingest_niftis

            uri = self.store_uri(ds)
            if os.path.exists(uri):
                shutil.rmtree(uri)
            img_dir, lbl_dir = ds.nifti_dirs(True)
            t0 = time.perf_counter()
            report = ingest_niftis(uri, {"CT": img_dir, "seg": lbl_dir}, progress=False, **self.ingest_kwargs)
            build_s = time.perf_counter() - t0
            if not report.ok:
                raise RuntimeError(report.summary())
            return {"bytes": dir_size(uri), "build_s": build_s, "ingest": dict(self.ingest_kwargs)}

        return ds.ensure(self.store_layout, build, log, key=self.layout_key())

    def layout_key(self) -> dict[str, Any]:
        """What the store's bytes depend on: rebuilt when a default of ``radiobject_adapter`` changes."""
        from dataclasses import asdict

        from radiobject_adapter.config import current_settings
        from radiobject_adapter.store.layout import FORMAT_VERSION, Tiling

        return {
            "ingest": dict(self.ingest_kwargs),
            "write": asdict(current_settings().write),
            "iso_tile": [Tiling().extents((512, 512, 512), itemsize=n) for n in (1, 2)],
            "format": FORMAT_VERSION,
        }

    def _radi(self, ds: DataSet):
        from radiobject_adapter import RadiObject

        return RadiObject(self.store_uri(ds))

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        from radiobject_adapter import create_segmentation_dataloader

        radi = self._radi(ds)
        ppv = max(1, -(-length // ds.spec.n_subjects))
        return create_segmentation_dataloader(
            radi.CT,
            radi.seg,
            batch_size=cfg.batch_size,
            patch_size=cfg.patch,
            num_workers=num_workers,
            pin_memory=False,
            persistent_workers=num_workers > 0,
            patches_per_volume=ppv,
            read_threads=self.read_threads,
        )

    # -- micro -------------------------------------------------------------------------------------
    def open_micro(self, ds: DataSet) -> None:
        from radiobject_adapter import DatasetConfig, SegmentationDataset

        radi = self._radi(ds)
        ct, seg = radi.CT, radi.seg
        self.vols = [ct[s] for s in ds.ids]
        for v in self.vols:  # warm cached properties (array open, metadata) outside timing
            _ = v.shape, v.metadata
        cfg = DatasetConfig(
            loading_mode="patch", patch_size=(64, 64, 64), patches_per_volume=1, read_threads=self.read_threads
        )
        self.ds_random = SegmentationDataset(ct, seg, cfg)
        self.ds_fg = SegmentationDataset(ct, seg, cfg, foreground_sampling=True, pos=1, neg=1)
        for i in range(len(self.ds_fg.records)):
            self.ds_fg.foreground_index(i)  # loaded once per process, like a worker would
        self._n = len(ds.ids)
        self._k = 0

    supports_items = True

    def read_patch(self, subject: int, start, size) -> np.ndarray:
        return self.vols[subject].read_box([(s, s + p) for s, p in zip(start, size)])

    def read_full(self, subject: int) -> np.ndarray:
        return self.vols[subject].to_numpy()

    def read_axial(self, subject: int, z: int) -> np.ndarray:
        return self.vols[subject].axial(z)

    def item(self, foreground: bool) -> Any:
        self._k += 1
        ds = self.ds_fg if foreground else self.ds_random
        return ds[self._k % self._n]


@register
class OursIso(_Ours):
    name = "ours-iso"
    label = "ours: isotropic 32³ byteshuffle+lz4 (defaults)"
    ingest_kwargs = {"tiling": "isotropic"}


@register
class OursAxial(_Ours):
    name = "ours-axial"
    label = "ours: axial tiles byteshuffle+lz4 (for 2D slices)"
    ingest_kwargs = {"tiling": "axial"}


@register
class OursV0(_Ours):
    name = "ours-v0"
    label = "ours before tuning: 64³ zstd-3, TileDB-Py reads, 1 read thread"
    ingest_kwargs = {"tiling": "isotropic", "tile_extent": 64, "compression": "zstd", "compression_level": 3}
    read_threads = 1

    def setup_process(self) -> None:
        super().setup_process()
        import radiobject_adapter.volume as volume
        from radiobject_adapter import ReadConfig, configure

        volume._DIRECT_READS = False  # TileDB-Py's arr.query(...)[...]
        configure(read=ReadConfig(concurrency=2, read_batching=True, malloc_trim=True, tune_allocator=False))
