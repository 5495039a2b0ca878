"""A sliding window as large as the volume allows, never larger than the volume needs.

The UNet of this bundle uses batch norm, so at inference a voxel's output does not depend on the
window it was computed in (beyond the zero padding at a window's border): the window need not be
the training patch. Few large windows cost less than many small ones: a 256x256x160 CT takes 4
windows of 128x128x160 (10.5 M voxels of network work) instead of 32 of 96^3 at overlap 0.25
(28.3 M). MONAI's :class:`~monai.inferers.SlidingWindowInferer` pads a volume smaller than its
window up to the window, which would make a 96x96x64 CT cost a full 128x128x160 window;
:class:`FittedWindowInferer` shrinks the window per call to the volume's size rounded up to a
multiple of ``divisible`` (the network's total stride), so a small volume is one window of about
its own size.

Example:
    >>> inferer = FittedWindowInferer(roi_size=[128, 128, 160], sw_batch_size=1, overlap=0.0)
    >>> inferer.window_for((96, 96, 64))
    (96, 96, 64)
    >>> inferer.window_for((256, 250, 300))
    (128, 128, 160)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import SlidingWindowInferer

__all__ = ["FittedWindowInferer"]


class FittedWindowInferer(SlidingWindowInferer):
    """:class:`~monai.inferers.SlidingWindowInferer` whose window is ``min(roi_size, volume)`` per axis.

    Args:
        roi_size: the largest window (each a multiple of ``divisible``).
        divisible: every window edge is a multiple of this (16 for a UNet with four stride-2 levels).
        kwargs: the other arguments of ``SlidingWindowInferer`` (``sw_batch_size``, ``overlap``, ``mode``, ...).
    """

    def __init__(self, roi_size: Sequence[int], divisible: int = 16, **kwargs: Any) -> None:
        if any(int(r) <= 0 or int(r) % divisible for r in roi_size):
            raise ValueError(f"roi_size {list(roi_size)}: every edge must be a positive multiple of {divisible}")
        super().__init__(roi_size=[int(r) for r in roi_size], **kwargs)
        self.max_roi = tuple(int(r) for r in roi_size)
        self.divisible = int(divisible)

    def window_for(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """The window used for a volume of ``spatial_shape``."""
        return tuple(
            min(r, max(self.divisible, math.ceil(int(s) / self.divisible) * self.divisible))
            for r, s in zip(self.max_roi, spatial_shape)
        )

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        window = self.window_for(inputs.shape[2:])
        # a per-call copy: MONAI Label may run two requests through one task's inferer at once
        call = copy.copy(self)
        call.roi_size = window
        if window != self.max_roi:
            call.roi_weight_map = None  # a cached weight map (cache_roi_weight_map) is for the largest window
        return SlidingWindowInferer.__call__(call, inputs, network, *args, **kwargs)
