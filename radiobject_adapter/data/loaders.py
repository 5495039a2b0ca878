"""DataLoader factories with the seed documents' keyword names.

Every loader is MONAI's ``DataLoader`` (MetaTensor-aware collation, per-worker reseeding),
worker-safe under ``fork`` (each worker opens its own TileDB context: see
:mod:`radiobject_adapter.config`), with ``distributed=True`` adding a ``DistributedSampler``
for DDP (MONAI's engines call ``set_epoch`` on it).

Example:
    >>> radi = RadiObject("store")
    >>> loader = create_segmentation_dataloader(radi.CT, radi.seg, patch_size=(64, 64, 64),
    ...     batch_size=4, num_workers=2, foreground_sampling=True, patches_per_volume=4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.data import DataLoader
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from radiobject_adapter.data.config import DatasetConfig, LoadingMode
from radiobject_adapter.data.datasets import LabelSource, SegmentationDataset, Transform, VolumeCollectionDataset
from radiobject_adapter.store.collection import VolumeCollection

__all__ = [
    "create_inference_dataloader",
    "create_segmentation_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "make_dataloader",
]


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    distributed: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    world_size: int | None = None,
    rank: int | None = None,
    sampler_drop_last: bool | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A MONAI ``DataLoader`` over ``dataset`` with the options every factory shares.

    With ``distributed`` the sampler takes ``world_size``/``rank`` from the initialised
    process group (torchrun) unless given; it drops the items that do not divide evenly among
    the ranks when ``sampler_drop_last`` (default: ``drop_last``) is true, else pads the shares.
    """
    if sampler_drop_last is None:
        sampler_drop_last = drop_last
    sampler = (
        DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=sampler_drop_last
        )
        if distributed
        else None
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        drop_last=drop_last,
        **kwargs,
    )


def _seeded(seed: int | None) -> dict[str, Any]:
    # MONAI's DataLoader reseeds the dataset from the loader's generator (num_workers=0) and
    # each worker from its base seed: a seeded generator makes positions, transforms and
    # shuffle order repeat; None leaves torch's global RNG in charge (set_determinism)
    return {} if seed is None else {"generator": torch.Generator().manual_seed(int(seed))}


def _config(
    patch_size: Sequence[int] | None,
    patches_per_volume: int,
    mode: LoadingMode | None,
    read_threads: int = 2,
    seed: int | None = None,
) -> DatasetConfig:
    if mode is None:
        mode = LoadingMode.PATCH if patch_size is not None else LoadingMode.FULL_VOLUME
    return DatasetConfig(
        loading_mode=mode,
        patch_size=tuple(patch_size) if patch_size is not None else None,
        patches_per_volume=patches_per_volume,
        read_threads=read_threads,
        seed=seed,
    )


def create_training_dataloader(
    collections: VolumeCollection | Sequence[VolumeCollection],
    labels: LabelSource = None,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    persistent_workers: bool = True,
    transform: Transform = None,
    patches_per_volume: int = 1,
    distributed: bool = False,
    loading_mode: LoadingMode | None = None,
    seed: int | None = None,
    read_threads: int = 2,
) -> DataLoader:
    """Shuffled loader of whole volumes, or of random patches when ``patch_size`` is given
    (``read_threads``: see :class:`DatasetConfig`). ``seed`` makes patch positions, random
    transforms and the order repeat, and seeds the ``DistributedSampler`` (0 when ``None``)."""
    ds = VolumeCollectionDataset(
        collections,
        _config(patch_size, patches_per_volume, loading_mode, read_threads, seed),
        labels=labels,
        transform=transform,
    )
    return make_dataloader(
        ds, batch_size, True, num_workers, pin_memory, persistent_workers, distributed, seed or 0, **_seeded(seed)
    )


def create_validation_dataloader(
    collections: VolumeCollection | Sequence[VolumeCollection],
    labels: LabelSource = None,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    transform: Transform = None,
    distributed: bool = False,
    loading_mode: LoadingMode | None = None,
) -> DataLoader:
    """Unshuffled loader (whole volumes unless ``patch_size``)."""
    ds = VolumeCollectionDataset(collections, _config(patch_size, 1, loading_mode), labels=labels, transform=transform)
    return make_dataloader(ds, batch_size, False, num_workers, pin_memory, False, distributed)


def create_inference_dataloader(
    collections: VolumeCollection | Sequence[VolumeCollection],
    batch_size: int = 1,
    num_workers: int = 4,
    pin_memory: bool = True,
    transform: Transform = None,
    *,
    dataset_type: type[VolumeCollectionDataset] = VolumeCollectionDataset,
) -> DataLoader:
    """Whole volumes in order, for sliding-window inference (radiobject's signature).

    ``dataset_type``: the dataset class over ``collections`` (``radiobject_adapter.ml`` passes
    its own, which names the batch keys as radiobject does).
    """
    ds = dataset_type(collections, DatasetConfig(), transform=transform)
    return make_dataloader(ds, batch_size, False, num_workers, pin_memory)


def create_segmentation_dataloader(
    image: VolumeCollection | Sequence[VolumeCollection],
    mask: VolumeCollection,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    persistent_workers: bool = True,
    transform: Transform = None,
    image_transform: Transform = None,
    spatial_transform: Transform = None,
    foreground_sampling: bool = False,
    foreground_threshold: float | None = None,
    foreground_max_retries: int = 10,
    pos: float = 1.0,
    neg: float = 1.0,
    class_ratios: Sequence[float] | None = None,
    patches_per_volume: int = 1,
    distributed: bool = False,
    shuffle: bool = True,
    loading_mode: LoadingMode | None = None,
    seed: int | None = None,
    read_threads: int = 2,
) -> DataLoader:
    """Image + label loader; ``foreground_sampling`` draws patch centres from the index
    (``foreground_threshold``/``foreground_max_retries``: see :class:`TileDBDataset`;
    ``read_threads``: see :class:`DatasetConfig`; ``seed``: see :func:`create_training_dataloader`)."""
    ds = SegmentationDataset(
        image,
        mask,
        _config(patch_size, patches_per_volume, loading_mode, read_threads, seed),
        transform=transform,
        image_transform=image_transform,
        spatial_transform=spatial_transform,
        foreground_sampling=foreground_sampling,
        foreground_threshold=foreground_threshold,
        foreground_max_retries=foreground_max_retries,
        pos=pos,
        neg=neg,
        class_ratios=class_ratios,
    )
    return make_dataloader(
        ds, batch_size, shuffle, num_workers, pin_memory, persistent_workers, distributed, seed or 0, **_seeded(seed)
    )
