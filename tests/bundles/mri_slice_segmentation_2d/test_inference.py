from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from bundles.mri_slice_segmentation_2d.scripts.inference import predict_volume


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))


def test_prediction_is_the_2d_network_applied_slice_by_slice(tiny_nifti):
    net = _net()
    image = LoadImage(image_only=True, ensure_channel_first=True)(tiny_nifti.images[0]).float() / 1000
    logits = predict_volume(net, image, roi_size=(32, 32), argmax=False)
    with torch.no_grad():
        expected = torch.stack([net(image[None, ..., k].float())[0] for k in range(image.shape[-1])], dim=-1)
    assert logits.shape == (3, 32, 32, 8)
    assert torch.allclose(torch.as_tensor(logits), expected, atol=1e-5)


def test_the_3d_prediction_keeps_the_source_affine(tiny_nifti):
    image = LoadImage(image_only=True, ensure_channel_first=True)(tiny_nifti.images[1])
    seg = predict_volume(_net(), image, roi_size=(16, 16))
    assert isinstance(seg, MetaTensor)
    assert seg.shape == (1, *image.shape[1:])
    np.testing.assert_allclose(seg.affine.numpy(), image.affine.numpy())


def test_a_non_volume_input_is_rejected():
    with pytest.raises(ValueError, match=r"\[C, H, W, D\]"):
        predict_volume(_net(), torch.zeros(1, 1, 8, 8, 8), roi_size=(8, 8))
