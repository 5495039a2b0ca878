"""Label-driven patch datasets for 3D segmentation training, from a store or from NIfTI files.

:func:`patch_training_dataset` is what the bundle's ``train#dataset`` names. It looks at the
datalist and returns:

* for volume addresses (a TileDB store): the adapter's :class:`TileDBDataset`, which reads only
  the patches, centred on voxels drawn from the foreground index stored at ingest;
* for files (NIfTI): a MONAI ``CacheDataset`` with ``LoadImaged`` + ``RandCropByPosNegLabeld``
  (foreground/background indices cached with the volumes).

Either way one item is one subject: a list of ``patches_per_volume`` patch dicts
(``{"image": [1, *patch], "label": [1, *patch], ...}``) after ``transform``, which MONAI's
``list_data_collate`` flattens into the batch, exactly as ``RandCropByPosNegLabeld(num_samples=k)``
does in the Model Zoo bundles. ``batch_size`` therefore counts subjects, a batch holds
``batch_size * patches_per_volume`` patches, and a ``DistributedSampler`` splits subjects
between processes.

Example:
    >>> train = make_datalist("/data/ct_store", split="train")
    >>> ds = patch_training_dataset(train, patch_size=(96, 96, 96), patches_per_volume=4)
    >>> [p["image"].shape for p in ds[0]]  # four patches of the first subject
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import CacheDataset
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureTyped,
    FgBgToIndicesd,
    LoadImaged,
    RandCropByPosNegLabeld,
    SpatialPadd,
)
from torch.utils.data import Dataset

from radiobject_adapter import DatasetConfig, LoadingMode, TileDBDataset
from radiobject_adapter.address import is_volume_address

__all__ = ["PatchesPerSubject", "datalist_source", "patch_training_dataset"]

_FG, _BG = "label_fg_indices", "label_bg_indices"


def datalist_source(data: Sequence[Mapping[str, Any]], image_key: str = "image") -> str:
    """``"store"`` when every image is a volume address, ``"nifti"`` when none is.

    Raises:
        ValueError: an empty datalist, or one that mixes both kinds.
    """
    if not data:
        raise ValueError("the datalist is empty; check dataset_dir and the split")
    kinds = set()
    for item in data:
        image = item[image_key]
        first = image[0] if isinstance(image, (list, tuple)) else image
        kinds.add("store" if is_volume_address(str(first)) else "nifti")
    if len(kinds) > 1:
        raise ValueError("the datalist mixes store addresses and files; give one kind per dataset")
    return kinds.pop()


class PatchesPerSubject(Dataset):
    """Groups a patch-mode :class:`TileDBDataset` by subject: item ``i`` is the list of its patches.

    Random state stays with the wrapped dataset, so MONAI's per-worker reseeding reaches it and
    patches are fresh every epoch and in every worker. A subject's patches are fetched together
    (``TileDBDataset.__getitems__``), so ``DatasetConfig.read_threads`` reads them in parallel.
    """

    def __init__(self, dataset: TileDBDataset) -> None:
        if dataset.config.loading_mode is not LoadingMode.PATCH:
            raise ValueError(f"PatchesPerSubject needs a PATCH-mode dataset, got {dataset.config.loading_mode}")
        self.dataset = dataset

    @property
    def patches_per_volume(self) -> int:
        return self.dataset.config.patches_per_volume

    def __len__(self) -> int:
        return len(self.dataset.records)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        if not 0 <= index < len(self):
            raise IndexError(f"subject index {index} out of range for {len(self)} subjects")
        k = self.patches_per_volume
        return self.dataset.__getitems__([index * k + j for j in range(k)])


def _store_dataset(
    data: Sequence[Mapping[str, Any]],
    patch_size: tuple[int, int, int],
    patches_per_volume: int,
    transform: Callable | None,
    pos: float,
    neg: float,
    pad_value: float,
) -> PatchesPerSubject:
    config = DatasetConfig(
        loading_mode=LoadingMode.PATCH,
        patch_size=patch_size,
        patches_per_volume=patches_per_volume,
        pad_value=pad_value,
    )
    dataset = TileDBDataset(
        [dict(item) for item in data], config, transform=transform, foreground_sampling=True, pos=pos, neg=neg
    )
    return PatchesPerSubject(dataset)


def _nifti_dataset(
    data: Sequence[Mapping[str, Any]],
    patch_size: tuple[int, int, int],
    patches_per_volume: int,
    transform: Callable | None,
    pos: float,
    neg: float,
    pad_value: float,
    cache_rate: float,
    num_workers: int,
) -> CacheDataset:
    keys = ["image", "label"]
    steps: list[Callable] = [
        LoadImaged(keys=keys, image_only=True, ensure_channel_first=True),
        EnsureTyped(keys="label", dtype=np.uint8),  # as the store's label patches
        FgBgToIndicesd(keys="label", fg_postfix="_fg_indices", bg_postfix="_bg_indices"),
        # everything above is cached; the crop below is drawn afresh for every item
        RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=patch_size,
            pos=pos,
            neg=neg,
            num_samples=patches_per_volume,
            fg_indices_key=_FG,
            bg_indices_key=_BG,
            allow_smaller=True,
        ),
        # a volume smaller than the patch is padded, never truncated (as the store path does)
        SpatialPadd(keys="image", spatial_size=patch_size, value=pad_value),
        SpatialPadd(keys="label", spatial_size=patch_size, value=0),
        DeleteItemsd(keys=[_FG, _BG]),
    ]
    if transform is not None:
        steps.append(transform)
    return CacheDataset(data, Compose(steps), cache_rate=cache_rate, num_workers=num_workers or None)


def patch_training_dataset(
    data: Sequence[Mapping[str, Any]],
    patch_size: Sequence[int],
    patches_per_volume: int = 4,
    transform: Callable | None = None,
    pos: float = 1.0,
    neg: float = 1.0,
    pad_value: float = 0.0,
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Dataset:
    """A training dataset of label-driven random patches, one subject per item.

    Args:
        data: ``[{"image": ..., "label": ..., "subject_id": ...}]``: store addresses or NIfTI paths.
        patch_size: spatial size of each patch (voxels; padded where a volume is smaller).
        patches_per_volume: patches drawn per subject and epoch.
        transform: applied to each patch dict (intensity scaling, augmentation).
        pos / neg: odds of a patch centred on foreground / background (``RandCropByPosNegLabeld``).
        pad_value: image value of padding, in raw intensity units (e.g. the lower end of the HU
            window, so padding becomes 0 after scaling); labels are padded with 0.
        cache_rate / num_workers: ``CacheDataset`` settings for NIfTI input (store input reads
            patches on demand and caches nothing).
    """
    size = tuple(int(p) for p in patch_size)
    if len(size) != 3:
        raise ValueError(f"patch_size must have three entries for a 3D bundle, got {list(patch_size)}")
    if datalist_source(data) == "store":
        return _store_dataset(data, size, patches_per_volume, transform, pos, neg, pad_value)
    return _nifti_dataset(data, size, patches_per_volume, transform, pos, neg, pad_value, cache_rate, num_workers)
