"""radiobject's loader factories: its signatures and defaults (training loaders drop the
last incomplete batch), its batch keys (:mod:`radiobject_adapter.ml.datasets`).

Example:
    >>> loader = create_training_dataloader(collections=radi.T1w, labels="diagnosis", batch_size=8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.data import DataLoader

from radiobject_adapter.data import loaders as _loaders
from radiobject_adapter.data.config import DatasetConfig, LoadingMode
from radiobject_adapter.data.datasets import LabelSource, Transform
from radiobject_adapter.data.loaders import make_dataloader
from radiobject_adapter.ml.datasets import SegmentationDataset, VolumeCollectionDataset

__all__ = [
    "create_inference_dataloader",
    "create_segmentation_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
]


def _config(patch_size: Sequence[int] | None, patches_per_volume: int = 1) -> DatasetConfig:
    mode = LoadingMode.PATCH if patch_size else LoadingMode.FULL_VOLUME
    return DatasetConfig(loading_mode=mode, patch_size=patch_size or None, patches_per_volume=patches_per_volume)


def volume_loader(
    collections: Any,
    labels: LabelSource,
    transform: Transform,
    patch_size: Sequence[int] | None,
    patches_per_volume: int = 1,
    **loader_options: Any,
) -> DataLoader:
    """The pair every radiobject factory builds: a :class:`VolumeCollectionDataset` of whole
    volumes (or patches) and its loader (:func:`~radiobject_adapter.data.loaders.make_dataloader`
    with ``loader_options``)."""
    ds = VolumeCollectionDataset(
        collections, _config(patch_size, patches_per_volume), labels=labels, transform=transform
    )
    return make_dataloader(ds, **loader_options)


def create_training_dataloader(
    collections: Any,
    labels: LabelSource = None,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    persistent_workers: bool = True,
    transform: Transform = None,
    patches_per_volume: int = 1,
    **kwargs: Any,
) -> DataLoader:
    """Shuffled whole volumes (or random patches with ``patch_size``); drops the last
    incomplete batch. Extra keywords go to :func:`~radiobject_adapter.data.loaders.make_dataloader`."""
    kwargs.setdefault("drop_last", True)
    return volume_loader(
        collections, labels, transform, patch_size, patches_per_volume,
        batch_size=batch_size, shuffle=True, num_workers=num_workers,
        pin_memory=pin_memory and num_workers > 0, persistent_workers=persistent_workers, **kwargs,
    )  # fmt: skip


def create_validation_dataloader(
    collections: Any,
    labels: LabelSource = None,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    transform: Transform = None,
) -> DataLoader:
    """Unshuffled, every item kept."""
    return volume_loader(
        collections, labels, transform, patch_size,
        batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory and num_workers > 0,
    )  # fmt: skip


def create_inference_dataloader(
    collections: Any,
    batch_size: int = 1,
    num_workers: int = 4,
    pin_memory: bool = True,
    transform: Transform = None,
) -> DataLoader:
    """Whole volumes in order, with radiobject's batch keys."""
    return _loaders.create_inference_dataloader(
        collections,
        batch_size,
        num_workers,
        pin_memory and num_workers > 0,
        transform,
        dataset_type=VolumeCollectionDataset,
    )


def create_segmentation_dataloader(
    image: Any,
    mask: Any,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    persistent_workers: bool = True,
    image_transform: Transform = None,
    spatial_transform: Transform = None,
    foreground_sampling: bool = False,
    foreground_threshold: float = 0.01,
    foreground_max_retries: int = 10,
    patches_per_volume: int = 1,
    **kwargs: Any,
) -> DataLoader:
    """Items ``{"image", "mask", ...}``; ``foreground_sampling`` centres patches on mask voxels
    drawn from the foreground index (``foreground_threshold`` / ``foreground_max_retries`` are
    accepted: index-based sampling needs neither). Drops the last incomplete batch."""
    ds = SegmentationDataset(
        image,
        mask,
        _config(patch_size, patches_per_volume),
        image_transform=image_transform,
        spatial_transform=spatial_transform,
        transform=kwargs.pop("transform", None),
        foreground_sampling=foreground_sampling,
        foreground_threshold=foreground_threshold,
        foreground_max_retries=foreground_max_retries,
    )
    kwargs.setdefault("drop_last", True)
    return make_dataloader(
        ds, batch_size, True, num_workers, pin_memory and num_workers > 0, persistent_workers, **kwargs
    )
