"""Loaders for the paired latent diffusion bundle: single images (autoencoder) and pairs (diffusion).

Both factories read either TIF folders (``<data>/<target>/*.tif``, ``<data>/<condition>/*.tif``)
or a store with collections of those names, and share one set of options:

* a seeded, shuffled split by *name* (``train_split``), or an external validation root
  (``val_dir``, same layout) used whole;
* ``subset_size``: draw that many names (seeded) before splitting, for quick runs;
* ``cache_rate``: MONAI ``CacheDataset`` keeps that fraction of the preprocessed images in RAM;
* ``distributed``: each rank reads its own share (``DistributedSampler``);
* on rank 0, a :class:`~scripts.stats.DatasetStatistics` report is logged.

Example:
    >>> train, val = create_ldm_dataloaders("data", batch_size=8, patch_size=256)
    >>> target, condition = next(iter(train))      # each [8, 1, 256, 256], float32
    >>> train, val = create_vae_dataloaders("store", 8, 256, data_source="both")
    >>> next(iter(train)).shape
    torch.Size([8, 1, 256, 256])
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from monai.data import CacheDataset, DataLoader, Dataset
from monai.data import DistributedSampler as EvenDistributedSampler
from torch.utils.data import DistributedSampler

from radiobject_adapter.store.radiobject import split_subjects

from .pairing import ImageSource, open_source, pair_sources
from .stats import dataset_statistics
from .transforms import paired_transforms

__all__ = [
    "condition_datalist",
    "create_condition_dataloader",
    "create_ldm_dataloaders",
    "create_vae_dataloaders",
    "select_names",
]

logger = logging.getLogger(__name__)


def select_names(
    names: Sequence[str], train_split: float, seed: int, subset_size: int | None = None
) -> tuple[list[str], list[str]]:
    """Seeded split of ``names`` into (train, val); ``subset_size`` first draws that many.

    The same names, fraction and seed always give the same split, whatever the order of
    ``names``. ``train_split=1`` puts everything in train.

    Example:
        >>> select_names([f"img_{i}" for i in range(10)], train_split=0.8, seed=42)
    """
    if not 0 < train_split <= 1:
        raise ValueError(f"train_split must be in (0, 1], got {train_split}")
    pool = sorted(set(names))
    if subset_size is not None:
        if subset_size < 1:
            raise ValueError(f"subset_size must be >= 1, got {subset_size}")
        random.Random(seed).shuffle(pool)
        pool = sorted(pool[:subset_size])
    return split_subjects(pool, val_fraction=1.0 - train_split, seed=seed)


def _resolve_ranks(distributed: bool, world_size: int | None, rank: int | None) -> tuple[int, int]:
    if not distributed:
        return 1, 0
    initialized = dist.is_available() and dist.is_initialized()
    size = world_size if world_size is not None else (dist.get_world_size() if initialized else 1)
    index = rank if rank is not None else (dist.get_rank() if initialized else 0)
    if not 0 <= index < size:
        raise ValueError(f"rank {index} is outside world_size {size}")
    return size, index


def _make_loader(
    items: list[dict[str, Any]],
    transform: Callable,
    batch_size: int,
    train: bool,
    num_workers: int,
    seed: int,
    cache_rate: float,
    world_size: int,
    rank: int,
    distributed: bool,
) -> DataLoader:
    if cache_rate > 0:
        dataset: Dataset = CacheDataset(
            items, transform, cache_rate=cache_rate, num_workers=max(1, num_workers), progress=False
        )
    else:
        dataset = Dataset(items, transform)
    sampler = None
    if distributed:
        sampler = (
            DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
            if train
            else EvenDistributedSampler(
                dataset,
                # uneven shards keep validation metrics exact; fewer items than ranks must be padded
                even_divisible=len(items) < world_size,
                num_replicas=world_size,
                rank=rank,
                shuffle=False,
            )
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed) if train and sampler is None else None,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _split_sources(
    data_base_dir: str,
    val_dir: str | None,
    train_split: float,
    seed: int,
    subset_size: int | None,
    names_of: Callable[[str], list[str]],
) -> tuple[list[str], list[str]]:
    if val_dir is None:
        train, val = select_names(names_of(data_base_dir), train_split, seed, subset_size)
    else:
        train, _ = select_names(names_of(data_base_dir), 1.0, seed, subset_size)
        val, _ = select_names(names_of(val_dir), 1.0, seed, subset_size)
    if not train:
        raise ValueError(f"no training images under {data_base_dir!r}")
    if not val:
        raise ValueError(
            f"no validation images: train_split={train_split} leaves none of {len(train)} names; "
            "lower train_split or pass val_dir"
        )
    return train, val


def _report(rank: int, enabled: bool, train: DataLoader, val: DataLoader, pairing: Any = None, **extra: Any) -> None:
    if enabled and rank == 0:
        stats = dataset_statistics(train.dataset, val.dataset, pairing=pairing, **extra)
        logger.info("dataset statistics\n%s", stats.format())


def create_vae_dataloaders(
    data_base_dir: str,
    batch_size: int,
    patch_size: int | Sequence[int],
    data_source: str = "edente",
    train_split: float = 0.9,
    val_dir: str | None = None,
    num_workers: int = 0,
    seed: int = 42,
    subset_size: int | None = None,
    cache_rate: float = 0.0,
    augment: bool = False,
    distributed: bool = False,
    world_size: int | None = None,
    rank: int | None = None,
    target: str = "edente",
    condition: str = "dente",
    report: bool = True,
) -> tuple[DataLoader, DataLoader]:
    """Train / validation loaders of single images ``[B, 1, H, W]`` for the autoencoder.

    Args:
        data_base_dir: folder with ``<target>/`` and ``<condition>/`` TIF folders, or a store.
        batch_size: images per batch.
        patch_size: images are resized to ``(H, W)`` (an int means square).
        data_source: which images: a folder / collection name, or ``"both"`` (target and
            condition). With ``"both"`` the split is by name, so the two images of a pair
            are always on the same side.
        train_split: fraction of names for training (seeded split); ignored with ``val_dir``.
        val_dir: validation root with the same layout (used whole).
        num_workers: DataLoader worker processes.
        seed: split, shuffling and sampler seed.
        subset_size: use only this many names (seeded draw) — for quick runs.
        cache_rate: fraction of preprocessed images cached in RAM.
        augment: random affine augmentation of training images.
        distributed / world_size / rank: shard with ``DistributedSampler`` (world size and
            rank default to the initialised process group).
        target / condition: folder / collection names that ``"both"`` stands for.
        report: log dataset statistics on rank 0.
    """
    kinds = [target, condition] if data_source == "both" else [data_source]
    size, index = _resolve_ranks(distributed, world_size, rank)

    def sources(root: str) -> list[ImageSource]:
        return [open_source(root, k) for k in kinds]

    def names_of(root: str) -> list[str]:
        return sorted({n for s in sources(root) for n in s.items})

    train_names, val_names = _split_sources(data_base_dir, val_dir, train_split, seed, subset_size, names_of)

    def loader(root: str, names: list[str], train: bool) -> DataLoader:
        wanted = set(names)
        srcs = sources(root)
        items = [
            {"image": path, "name": name, "source": kind}
            for kind, src in zip(kinds, srcs)
            for name, path in src.items.items()
            if name in wanted
        ]
        transform = paired_transforms(["image"], patch_size, srcs[0].reader, augment and train, output_keys=["image"])
        return _make_loader(
            items, transform, batch_size, train, num_workers, seed, cache_rate, size, index, distributed
        )

    train_loader = loader(data_base_dir, train_names, True)
    val_loader = loader(val_dir or data_base_dir, val_names, False)
    _report(index, report, train_loader, val_loader, data_source=data_source, val_dir=val_dir or "(split)")
    return train_loader, val_loader


def create_ldm_dataloaders(
    data_base_dir: str,
    batch_size: int,
    patch_size: int | Sequence[int],
    target: str = "edente",
    condition: str = "dente",
    train_split: float = 0.9,
    val_dir: str | None = None,
    num_workers: int = 0,
    seed: int = 42,
    subset_size: int | None = None,
    cache_rate: float = 0.0,
    augment: bool = False,
    distributed: bool = False,
    world_size: int | None = None,
    rank: int | None = None,
    keep_intersection: bool = False,
    report: bool = True,
) -> tuple[DataLoader, DataLoader]:
    """Train / validation loaders of ``(target, condition)`` pairs, each ``[B, 1, H, W]``.

    Pairs match by name (see :func:`~scripts.pairing.pair_sources`): names found
    on one side only raise :class:`~scripts.pairing.UnpairedImagesError` that
    lists them, unless ``keep_intersection=True`` (then they are logged and left out).
    Augmentation, when on, moves both images of a pair identically. Other arguments as in
    :func:`create_vae_dataloaders`.
    """
    size, index = _resolve_ranks(distributed, world_size, rank)
    reports = {}

    def pairs_of(root: str) -> dict[str, tuple[str, str]]:
        if root not in reports:
            reports[root] = pair_sources(open_source(root, target), open_source(root, condition), keep_intersection)
        return {name: (t, c) for name, t, c in reports[root].pairs}

    train_names, val_names = _split_sources(
        data_base_dir, val_dir, train_split, seed, subset_size, lambda root: list(pairs_of(root))
    )

    def loader(root: str, names: list[str], train: bool) -> DataLoader:
        pairs = pairs_of(root)
        items = [{"target": pairs[n][0], "condition": pairs[n][1], "name": n} for n in names]
        reader = open_source(root, target).reader
        transform = paired_transforms(
            ["target", "condition"], patch_size, reader, augment and train, output_keys=["target", "condition"]
        )
        return _make_loader(
            items, transform, batch_size, train, num_workers, seed, cache_rate, size, index, distributed
        )

    train_loader = loader(data_base_dir, train_names, True)
    val_loader = loader(val_dir or data_base_dir, val_names, False)
    _report(index, report, train_loader, val_loader, pairing=reports[data_base_dir], val_dir=val_dir or "(split)")
    return train_loader, val_loader


def condition_datalist(data_dir: str, condition: str = "dente") -> list[dict[str, str]]:
    """``[{"condition": path_or_address, "name": name}, ...]`` for every condition image."""
    return [{"condition": item, "name": name} for name, item in open_source(data_dir, condition).items.items()]


def create_condition_dataloader(
    data_dir: str,
    patch_size: int | Sequence[int],
    condition: str = "dente",
    batch_size: int = 1,
    num_workers: int = 0,
) -> DataLoader:
    """Batches of ``{"condition": [B, 1, H, W], "name": [...]}`` over every condition image.

    The condition keeps its MONAI meta (original size), so outputs can be saved at the
    size of the input file.
    """
    source = open_source(data_dir, condition)
    items = condition_datalist(data_dir, condition)
    transform = paired_transforms(["condition"], patch_size, source.reader, augment=False, track_meta=True)
    return DataLoader(Dataset(items, transform), batch_size=batch_size, shuffle=False, num_workers=num_workers)
