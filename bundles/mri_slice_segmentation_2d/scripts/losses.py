"""Segmentation losses chosen by name: ``dice``, ``cross_entropy``, ``dice_ce``.

All take logits ``[N, C, H, W]`` (``C`` = number of classes, 2 for binary) and integer labels
``[N, 1, H, W]``.

Example:
    >>> loss = segmentation_loss("dice_ce")
    >>> loss(torch.randn(4, 2, 32, 32), torch.randint(0, 2, (4, 1, 32, 32)))
"""

from __future__ import annotations

from typing import Any

import torch
from monai.losses import DiceCELoss, DiceLoss

__all__ = ["LOSSES", "CrossEntropySegLoss", "segmentation_loss"]

LOSSES = ("dice", "cross_entropy", "dice_ce")


class CrossEntropySegLoss(torch.nn.Module):
    """Cross-entropy for channel-first integer labels (``[N, 1, ...]``), as MONAI's losses take them."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ce = torch.nn.CrossEntropyLoss(weight=weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(pred, target[:, 0].long() if target.shape[1] == 1 else target.argmax(1))


def segmentation_loss(name: str, include_background: bool = True, batch: bool = True, **kwargs: Any) -> torch.nn.Module:
    """The loss called ``name``; ``kwargs`` go to MONAI's ``DiceLoss`` / ``DiceCELoss``.

    ``batch=True`` computes Dice over all slices of the batch at once: many slices hold no
    foreground, and a per-slice Dice would reward predicting nothing on each of them.

    Raises:
        ValueError: unknown name, listing the known ones.
    """
    if name == "dice":
        return DiceLoss(to_onehot_y=True, softmax=True, include_background=include_background, batch=batch, **kwargs)
    if name == "cross_entropy":
        return CrossEntropySegLoss()
    if name == "dice_ce":
        return DiceCELoss(to_onehot_y=True, softmax=True, include_background=include_background, batch=batch, **kwargs)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
