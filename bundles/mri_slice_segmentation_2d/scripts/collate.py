"""Volumes to slices and back: ``[B, C, H, W, D] <-> [B*D, C, H, W]``.

Slice ``k`` of volume ``b`` is row ``b * D + k`` of the slice batch. :class:`SlicePrepareBatch`
is the ``prepare_batch`` of MONAI's trainers, evaluators and of
:class:`radiobundles.training.BatchNormRecalibration`: volume batches become slice batches,
slice batches (from a slice dataset) pass through.

Example:
    >>> x = torch.zeros(2, 1, 64, 64, 24)
    >>> volumes_to_slices(x).shape
    torch.Size([48, 1, 64, 64])
    >>> slices_to_volumes(volumes_to_slices(x), batch_size=2).shape
    torch.Size([2, 1, 64, 64, 24])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import convert_to_tensor

__all__ = ["SlicePrepareBatch", "slices_to_volumes", "volumes_to_slices"]


def volumes_to_slices(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W, D] -> [B*D, C, H, W]`` (axial slices, volume-major order)."""
    if x.ndim != 5:
        raise ValueError(f"expected a volume batch [B, C, H, W, D], got shape {tuple(x.shape)}")
    b, c, h, w, d = x.shape
    return x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)


def slices_to_volumes(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``[B*D, C, H, W] -> [B, C, H, W, D]``, the inverse of :func:`volumes_to_slices`."""
    if x.ndim != 4:
        raise ValueError(f"expected a slice batch [B*D, C, H, W], got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if batch_size < 1 or n % batch_size:
        raise ValueError(f"{n} slices do not split into {batch_size} volumes of equal depth")
    return x.reshape(batch_size, n // batch_size, c, h, w).permute(0, 2, 3, 4, 1)


class SlicePrepareBatch(PrepareBatch):
    """``prepare_batch`` that feeds 2D networks from volume or slice batches.

    Args:
        image_key / label_key: keys of the batch dictionary.
        num_classes: if given, labels must lie in ``[0, num_classes)`` (checked per batch, so a
            wrong ``num_classes`` fails with a clear message instead of inside one-hot encoding).

    Example:
        >>> SupervisedTrainer(..., prepare_batch=SlicePrepareBatch(num_classes=2))
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", num_classes: int | None = None) -> None:
        self.image_key = image_key
        self.label_key = label_key
        self.num_classes = num_classes

    def _to_slices(self, x: Any, device: Any, non_blocking: bool) -> torch.Tensor:
        x = convert_to_tensor(x, track_meta=False)  # slice batches need no per-volume meta
        if x.ndim == 5:
            x = volumes_to_slices(x)
        return x.to(device=device, non_blocking=non_blocking)

    def __call__(
        self,
        batchdata: Mapping[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = self._to_slices(batchdata[self.image_key], device, non_blocking)
        label = batchdata.get(self.label_key)
        if label is None:
            return image, None
        label = self._to_slices(label, device, non_blocking)
        if self.num_classes is not None and label.numel():
            low, high = int(label.min()), int(label.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"label values span [{low}, {high}] but num_classes={self.num_classes}; "
                    f"set num_classes to {high + 1} (background counts as a class)"
                )
        return image, label
