"""A UNet that works on a coarser grid than its input and answers on the input's grid.

Most of the time an annotator waits for ``/infer`` goes into the network's convolutions, whose
cost grows with the voxel count. :class:`CoarseGridUNet` average-pools the input by
``downsample`` per axis (2: one eighth of the voxels in 3D), runs MONAI's ``UNet`` there, and
resizes the logits back to the input's size (linear interpolation, ``align_corners=False``, so a
coarse voxel's value lands on the centre of the block it was pooled from). It is the Model Zoo
recipe of a coarser working spacing plus resampling back (``Spacingd`` ... ``Invertd``), done
inside the network, so that:

* labels and loss stay on the source grid: no nearest-neighbour label resampling (which shifts a
  factor-2 grid by half a source voxel), and Dice is computed where the labels are;
* training reads the same patches (``patch_size`` stays in source voxels) and inference needs no
  inverse transform: the bundle's transforms, MONAI Label's infer and scoring tasks and
  TorchScript export are unchanged.

Input sizes must be multiples of ``downsample * 2 ** len(strides)`` per axis (the sliding-window
``roi_size``, the training ``patch_size``).

Example:
    >>> net = CoarseGridUNet(3, 1, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2), downsample=2)
    >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
    torch.Size([1, 3, 32, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.layers import Pool
from monai.networks.nets import UNet
from monai.utils import ensure_tuple_rep
from torch import nn
from torch.nn import functional as F

__all__ = ["CoarseGridUNet"]

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


class CoarseGridUNet(nn.Module):
    """MONAI ``UNet`` on an input average-pooled by ``downsample``; logits resized back to the input size.

    Args:
        spatial_dims, in_channels, out_channels, channels, strides: as MONAI's ``UNet``.
        downsample: pooling factor per axis (an int for all axes); 1 makes this a plain ``UNet``.
        unet_kwargs: any other ``UNet`` argument (``num_res_units``, ``norm``, ``dropout``, ...).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        downsample: int | Sequence[int] = 2,
        **unet_kwargs: Any,
    ) -> None:
        super().__init__()
        factors = tuple(int(f) for f in ensure_tuple_rep(downsample, spatial_dims))
        if any(f < 1 for f in factors):
            raise ValueError(f"downsample must be >= 1 per axis, got {downsample}")
        self.downsample = factors
        self.mode = _LINEAR[spatial_dims]
        self.pool: nn.Module = (
            Pool[Pool.AVG, spatial_dims](kernel_size=factors, stride=factors) if max(factors) > 1 else nn.Identity()
        )
        self.unet = UNet(spatial_dims, in_channels, out_channels, channels, strides, **unet_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.unet(self.pool(x))
        if y.shape[2:] == x.shape[2:]:
            return y
        return F.interpolate(y, size=x.shape[2:], mode=self.mode, align_corners=False)
