"""Iteration steps: VAE-GAN with warm-up, latent diffusion training and DDIM sampling."""

from __future__ import annotations

import pytest
import torch
from monai.engines import IterationEvents
from monai.inferers import LatentDiffusionInferer
from monai.networks.nets import PatchDiscriminator
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from bundles.paired_latent_diffusion_2d.scripts.engines import (
    AutoencoderKLEvalStep,
    AutoencoderKLTrainStep,
    LatentDiffusionSampleStep,
    LatentDiffusionTrainStep,
    loss_terms,
)
from bundles.paired_latent_diffusion_2d.scripts.latent import LatentConditioner, load_frozen
from bundles.paired_latent_diffusion_2d.scripts.losses import AutoencoderKLLoss


@pytest.fixture
def ae_engine(make_autoencoder, make_engine):
    def build(epoch: int = 1):
        ae = make_autoencoder()
        engine = make_engine(
            network=ae,
            optimizer=torch.optim.Adam(ae.parameters(), lr=1e-3),
            loss_function=AutoencoderKLLoss(kl_weight=1e-6, perceptual_weight=0.0),
        )
        engine.state.epoch = epoch
        return engine

    return build


def _discriminator():
    torch.manual_seed(0)
    disc = PatchDiscriminator(spatial_dims=2, num_layers_d=2, channels=8, in_channels=1, out_channels=1)
    return disc, torch.optim.Adam(disc.parameters(), lr=1e-3)


def test_adversarial_term_waits_for_the_warmup_epochs(ae_engine):
    disc, d_opt = _discriminator()
    step = AutoencoderKLTrainStep(disc, d_opt, adversarial_weight=0.1, adversarial_warmup_epochs=2)
    images = torch.rand(2, 1, 16, 16)
    before = [p.clone() for p in disc.parameters()]
    out = step(ae_engine(epoch=2), images)
    assert "loss_discriminator" not in out
    assert all(torch.equal(a, b) for a, b in zip(before, disc.parameters()))
    out = step(ae_engine(epoch=3), images)
    assert {"loss_generator_adv", "loss_discriminator"} <= set(out)
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters()))
    assert not AutoencoderKLTrainStep(disc, d_opt, adversarial_weight=0.0).adversarial_active(99)


def test_autoencoder_step_reduces_reconstruction_error_and_fires_monai_events(ae_engine):
    engine = ae_engine()
    step = AutoencoderKLTrainStep()
    images = torch.rand(4, 1, 16, 16) * (torch.rand(4, 1, 16, 16) > 0.3)
    first = step(engine, images)["loss_l1"]
    for _ in range(15):
        out = step(engine, images)
    assert out["loss_l1"] < first
    assert engine.state.output is out and out["pred"].shape == images.shape
    assert IterationEvents.MODEL_COMPLETED in engine.events and IterationEvents.BACKWARD_COMPLETED in engine.events
    assert set(loss_terms(out)) == {"loss", "loss_l1", "loss_kl", "loss_perceptual"}


def test_autoencoder_eval_step_returns_the_reconstruction(ae_engine):
    engine = ae_engine()
    out = AutoencoderKLEvalStep()(engine, torch.rand(2, 1, 16, 16))
    assert out["pred"].shape == (2, 1, 16, 16) and out["label"] is out["image"]


@pytest.fixture
def ldm_engine(make_autoencoder, make_unet, make_engine):
    def build(mode: str = "crossattn"):
        ae = make_autoencoder()
        conditioner = LatentConditioner(mode, position_channels=8)
        unet = make_unet(in_channels=4 if mode == "concat" else 2, context_dim=10 if mode == "crossattn" else None)
        inferer = LatentDiffusionInferer(DDPMScheduler(num_train_timesteps=50, clip_sample=False), scale_factor=0.7)
        engine = make_engine(
            network=unet,
            optimizer=torch.optim.Adam(unet.parameters(), lr=1e-3),
            loss_function=torch.nn.MSELoss(),
            inferer=inferer,
        )
        return engine, ae, conditioner

    return build


def test_diffusion_step_trains_the_unet_and_leaves_the_autoencoder_alone(tmp_path, ldm_engine, make_autoencoder):
    engine, ae, conditioner = ldm_engine()
    torch.save(ae.state_dict(), tmp_path / "ae.pt")
    ae = load_frozen(make_autoencoder(), tmp_path / "ae.pt")
    ae_before = {k: v.clone() for k, v in ae.state_dict().items()}
    unet_before = [p.clone() for p in engine.network.parameters()]
    out = LatentDiffusionTrainStep(ae, conditioner)(engine, (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)))
    assert torch.isfinite(out["loss"]) and out["loss_mse"] == out["loss"]
    assert any(not torch.equal(a, b) for a, b in zip(unet_before, engine.network.parameters()))
    torch.testing.assert_close(ae.state_dict(), ae_before)


def test_concat_mode_trains_too(ldm_engine):
    engine, ae, conditioner = ldm_engine("concat")
    out = LatentDiffusionTrainStep(ae.eval(), conditioner)(engine, (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)))
    assert torch.isfinite(out["loss"])


def test_sampling_generates_a_target_sized_image_reproducibly_from_pairs_or_dicts(ldm_engine):
    engine, ae, conditioner = ldm_engine()
    step = LatentDiffusionSampleStep(
        ae.eval(), conditioner, DDIMScheduler(50, clip_sample=False), num_inference_steps=3
    )
    target, condition = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    first = step(engine, (target, condition))
    assert first["pred"].shape == target.shape and first["label"] is not None
    again = step(engine, (target, condition))
    torch.testing.assert_close(first["pred"], again["pred"])
    from_dict = step(engine, {"condition": condition, "name": ["a", "b"]})
    assert "label" not in from_dict
    torch.testing.assert_close(from_dict["pred"], first["pred"])


def test_sampling_with_a_perfect_noise_predictor_returns_the_autoencoder_reconstruction(make_autoencoder, make_engine):
    """Pins the plumbing: scale factor in and out of the latent space, DDPM/DDIM schedules, decoding."""
    ae = make_autoencoder().eval()
    target, condition = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    scale = 0.6
    schedule = {"schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195, "clip_sample": False}
    ddim = DDIMScheduler(1000, **schedule)
    with torch.no_grad():
        x0 = ae.encode(target)[0] * scale

    class Oracle(torch.nn.Module):
        def forward(self, x, timesteps, context=None):
            abar = ddim.alphas_cumprod[timesteps.long()].reshape(-1, 1, 1, 1)
            return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

    inferer = LatentDiffusionInferer(DDPMScheduler(1000, **schedule), scale_factor=scale)
    engine = make_engine(network=Oracle(), inferer=inferer)
    out = LatentDiffusionSampleStep(ae, LatentConditioner("crossattn"), ddim, num_inference_steps=10)(
        engine, (target, condition)
    )
    with torch.no_grad():
        torch.testing.assert_close(out["pred"], ae.reconstruct(target), atol=1e-4, rtol=1e-4)
