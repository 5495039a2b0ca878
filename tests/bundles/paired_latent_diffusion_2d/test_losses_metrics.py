"""Autoencoder loss terms, the offline perceptual loss, and range-aware PSNR / SSIM."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import PerceptualLoss
from monai.metrics import PSNRMetric, SSIMMetric

from bundles.paired_latent_diffusion_2d.scripts.losses import AutoencoderKLLoss, kl_divergence
from bundles.paired_latent_diffusion_2d.scripts.metrics import TargetRangePSNRMetric, TargetRangeSSIMMetric


def test_kl_is_zero_for_the_standard_normal_and_positive_otherwise():
    assert kl_divergence(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)).item() == 0.0
    # per element 0.5 * (mu^2) with mu = 1 -> 0.5 * 48 elements
    assert kl_divergence(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4)).item() == pytest.approx(24.0)


def test_loss_terms_add_up_with_their_weights():
    perceptual = lambda a, b: (a - b).pow(2).mean()  # noqa: E731
    loss = AutoencoderKLLoss(kl_weight=0.5, perceptual_weight=2.0, perceptual_loss=perceptual)
    recon, target = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    mu, sigma = torch.ones(2, 2, 4, 4), torch.ones(2, 2, 4, 4)
    terms = loss(recon, target, mu, sigma)
    expected = terms["loss_l1"] + 0.5 * terms["loss_kl"] + 2.0 * terms["loss_perceptual"]
    torch.testing.assert_close(terms["loss"], expected)
    with pytest.raises(ValueError, match="perceptual_loss"):
        AutoencoderKLLoss(perceptual_weight=1.0)


def test_default_perceptual_loss_builds_offline_and_is_differentiable():
    loss = PerceptualLoss(spatial_dims=2, network_type="resnet50", pretrained=False, is_fake_3d=False)
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    value = loss(x, torch.rand(2, 1, 32, 32))
    value.backward()
    assert torch.isfinite(value) and x.grad is not None and torch.isfinite(x.grad).all()
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_pretrained_perceptual_weights_load_from_a_local_file(tmp_path):
    import torchvision

    weights = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(weights, tmp_path / "resnet50.pth")
    loss = PerceptualLoss(
        spatial_dims=2,
        network_type="resnet50",
        pretrained=True,
        pretrained_path=str(tmp_path / "resnet50.pth"),
        is_fake_3d=False,
    )
    first_conv = next(p for n, p in loss.named_parameters() if "conv1" in n)
    torch.testing.assert_close(first_conv, weights["conv1.weight"])


def test_psnr_uses_the_reference_range_and_matches_monai_for_a_fixed_range():
    y = torch.rand(3, 1, 16, 16) * 4 - 1
    pred = y + 0.1 * torch.randn_like(y)
    ours = TargetRangePSNRMetric(data_range=5.0)(pred, y)
    torch.testing.assert_close(ours, PSNRMetric(max_val=5.0, reduction="none")(pred, y))
    per_image = TargetRangePSNRMetric()(pred, y)
    span = (y.flatten(1).max(1).values - y.flatten(1).min(1).values)[:, None]
    mse = (pred - y).pow(2).flatten(1).mean(1, keepdim=True)
    torch.testing.assert_close(per_image, 10 * torch.log10(span**2 / mse))


def test_ssim_is_one_for_identical_images_and_scale_invariant():
    y = torch.rand(2, 1, 24, 24)
    assert TargetRangeSSIMMetric()(y, y).min().item() == pytest.approx(1.0, abs=1e-5)
    pred = y + 0.05 * torch.randn_like(y)
    torch.testing.assert_close(TargetRangeSSIMMetric()(pred * 10, y * 10), TargetRangeSSIMMetric()(pred, y))
    fixed = TargetRangeSSIMMetric(data_range=1.0)(pred, y)
    torch.testing.assert_close(fixed, SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(pred, y))


def test_constant_reference_gives_finite_metrics():
    y = torch.full((1, 1, 16, 16), 3.0)
    assert math.isfinite(TargetRangePSNRMetric()(y + 0.1, y).item())
    assert math.isfinite(TargetRangeSSIMMetric()(y + 0.1, y).item())
