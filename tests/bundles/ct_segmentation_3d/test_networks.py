"""``CoarseGridUNet``: the UNet on a pooled grid, logits back on the input grid."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet
from torch.nn import functional as F

from bundles.ct_segmentation_3d.scripts.networks import CoarseGridUNet

NET = {"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 1, "norm": "instance"}


def test_logits_come_back_on_the_input_grid_from_the_pooled_one():
    torch.manual_seed(0)
    net = CoarseGridUNet(3, 1, 3, downsample=2, **NET).eval()
    x = torch.rand(1, 1, 32, 24, 16)
    with torch.no_grad():
        y = net(x)
        coarse = net.unet(F.avg_pool3d(x, 2))
    assert y.shape == (1, 3, 32, 24, 16)
    assert coarse.shape == (1, 3, 16, 12, 8)
    # the coarse logits resized to the input grid, voxel centres aligned (align_corners=False)
    expected = F.interpolate(coarse, size=(32, 24, 16), mode="trilinear", align_corners=False)
    torch.testing.assert_close(y, expected)


def test_downsample_one_is_the_plain_unet():
    torch.manual_seed(0)
    plain = UNet(3, 1, 2, **NET).eval()
    net = CoarseGridUNet(3, 1, 2, downsample=1, **NET).eval()
    net.unet.load_state_dict(plain.state_dict())
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(x))


def test_per_axis_factors_and_unet_arguments_pass_through():
    net = CoarseGridUNet(3, 1, 2, downsample=(2, 2, 1), dropout=0.2, **NET)
    assert net.downsample == (2, 2, 1)
    assert net(torch.rand(2, 1, 16, 16, 8)).shape == (2, 2, 16, 16, 8)


def test_a_factor_below_one_is_refused():
    with pytest.raises(ValueError, match="downsample must be >= 1"):
        CoarseGridUNet(3, 1, 2, downsample=0, **NET)
