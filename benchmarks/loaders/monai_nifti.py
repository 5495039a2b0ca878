"""MONAI's stock pipeline, the seeds' baseline: ``Dataset`` + ``LoadImaged`` +
``EnsureChannelFirstd`` + ``RandSpatialCropd`` over ``.nii.gz`` (and over ``.nii``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.loaders import Contender, register
from benchmarks.synth import DataSet


def monai_transforms(patch: tuple[int, int, int], with_crop: bool = True):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandSpatialCropd

    keys = ["image", "label"]
    steps = [LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys)]
    if with_crop:
        steps.append(RandSpatialCropd(keys=keys, roi_size=patch, random_size=False))
    return Compose(steps)


def datalist(ds: DataSet, compressed: bool, length: int) -> list[dict[str, str]]:
    pairs = ds.nifti_pairs(compressed)
    return [{"image": pairs[i % len(pairs)][0], "label": pairs[i % len(pairs)][1]} for i in range(length)]


def monai_loader(dataset: Any, cfg: BenchConfig, num_workers: int):
    from monai.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        timeout=cfg.batch_timeout_s * 10 if num_workers > 0 else 0,
    )


class _MonaiNifti(Contender):
    slow_loader = True
    compressed = True

    def make_loader(self, ds: DataSet, cfg: BenchConfig, num_workers: int, length: int) -> Any:
        from monai.data import Dataset

        data = datalist(ds, self.compressed, length)
        return monai_loader(Dataset(data, transform=monai_transforms(cfg.patch)), cfg, num_workers)

    # -- micro: nibabel, as LoadImaged uses it ---------------------------------------------------
    def open_micro(self, ds: DataSet) -> None:
        self.paths = [p for p, _ in ds.nifti_pairs(self.compressed)]

    def _img(self, subject: int):
        import nibabel as nib

        return nib.load(self.paths[subject])

    def read_patch(self, subject: int, start, size) -> np.ndarray:
        box = tuple(slice(s, s + p) for s, p in zip(start, size))
        return np.asarray(self._img(subject).dataobj[box])

    def read_full(self, subject: int) -> np.ndarray:
        return np.array(self._img(subject).dataobj)  # a copy: an uncompressed file would be a lazy memmap

    def read_axial(self, subject: int, z: int) -> np.ndarray:
        return np.asarray(self._img(subject).dataobj[:, :, z])


@register
class MonaiNiiGz(_MonaiNifti):
    name = "monai-niigz"
    label = "MONAI LoadImaged .nii.gz (seeds' baseline)"
    store_layout = "nii_gz"
    compressed = True
    slow_patch = True


@register
class MonaiNii(_MonaiNifti):
    name = "monai-nii"
    label = "MONAI LoadImaged .nii"
    store_layout = "nii"
    compressed = False
