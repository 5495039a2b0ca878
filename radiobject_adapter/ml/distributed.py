"""radiobject's ``create_distributed_dataloader`` and ``set_epoch`` (DDP).

Example:
    >>> loader = create_distributed_dataloader(radi.CT, rank=0, world_size=2, batch_size=2)
    >>> for epoch in range(3):
    ...     set_epoch(loader, epoch)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from radiobject_adapter.data.datasets import LabelSource, Transform
from radiobject_adapter.ml.factory import volume_loader

__all__ = ["create_distributed_dataloader", "set_epoch"]


def create_distributed_dataloader(
    collections: Any,
    rank: int,
    world_size: int,
    labels: LabelSource = None,
    batch_size: int = 4,
    patch_size: Sequence[int] | None = None,
    num_workers: int = 4,
    pin_memory: bool = True,
    transform: Transform = None,
    seed: int = 0,
) -> DataLoader:
    """A loader of this rank's share (``DistributedSampler``, shuffled, last incomplete batch
    dropped); needs no initialised process group since ``rank`` and ``world_size`` are given."""
    if not 0 <= int(rank) < int(world_size):
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    # the sampler pads the ranks' shares to one length (as radiobject's); batches drop the tail
    return volume_loader(
        collections, labels, transform, patch_size,
        batch_size=batch_size, shuffle=True, num_workers=num_workers, pin_memory=pin_memory and num_workers > 0,
        distributed=True, world_size=int(world_size), rank=int(rank), seed=seed, drop_last=True,
        sampler_drop_last=False,
    )  # fmt: skip


def set_epoch(dataloader: DataLoader, epoch: int) -> None:
    """Tell the loader's ``DistributedSampler`` the epoch (a new shuffle each epoch)."""
    sampler = getattr(dataloader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
