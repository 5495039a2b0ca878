"""Latent scale factor, condition encoding and frozen checkpoints."""

from __future__ import annotations

import pytest
import torch

from bundles.paired_latent_diffusion_2d.scripts.latent import (
    LatentConditioner,
    LatentScale,
    load_frozen,
    position_encoding_2d,
    read_latent_scale,
)


def test_scale_factor_makes_latents_unit_variance(make_autoencoder):
    ae = make_autoencoder()
    torch.manual_seed(1)
    batches = [(torch.randn(4, 1, 16, 16) * 3, torch.randn(4, 1, 16, 16)) for _ in range(3)]
    scale = LatentScale.from_data(ae, batches, "cpu")
    torch.manual_seed(2)
    z = torch.cat([ae.encode_stage_2_inputs(t) for t, _ in batches]) * float(scale)
    assert z.std().item() == pytest.approx(1.0, abs=0.05)
    assert set(scale.state_dict()) == {"value"}


def test_scale_factor_needs_data(make_autoencoder):
    with pytest.raises(ValueError, match="no batches"):
        LatentScale.from_data(make_autoencoder(), [], "cpu")


def test_position_encoding_distinguishes_every_latent_pixel():
    pos = position_encoding_2d(4, 6, 8)
    assert pos.shape == (24, 8)
    assert torch.unique(pos, dim=0).shape[0] == 24
    with pytest.raises(ValueError, match="divisible by 4"):
        position_encoding_2d(4, 4, 6)


def test_crossattn_condition_is_one_token_per_latent_pixel_with_position_channels(make_autoencoder):
    ae = make_autoencoder().eval()
    image = torch.randn(3, 1, 16, 16)
    conditioner = LatentConditioner("crossattn", position_channels=8)
    latent, tokens = conditioner(ae, image, 0.5)
    assert latent.shape == (3, 2, 8, 8)
    assert tokens.shape == (3, 64, conditioner.context_dim(2)) == (3, 64, 10)
    torch.testing.assert_close(tokens[:, :, :2], latent.flatten(2).transpose(1, 2))
    torch.testing.assert_close(latent, ae.encode(image)[0] * 0.5)  # the mean: deterministic


def test_concat_condition_is_the_latent_itself(make_autoencoder):
    ae = make_autoencoder().eval()
    latent, condition = LatentConditioner("concat")(ae, torch.randn(2, 1, 16, 16), 1.0)
    assert condition is latent and LatentConditioner("concat").context_dim(2) == 2
    with pytest.raises(ValueError, match="condition mode"):
        LatentConditioner("film")


def test_load_frozen_returns_an_eval_module_without_gradients(tmp_path, make_autoencoder):
    ae = make_autoencoder()
    torch.save({"diffusion": ae.state_dict(), "latent_scale": LatentScale(0.25).state_dict()}, tmp_path / "m.pt")
    fresh = make_autoencoder()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    loaded = load_frozen(fresh, tmp_path / "m.pt", key="diffusion")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.state_dict(), ae.state_dict())
    assert read_latent_scale(tmp_path / "m.pt") == 0.25
    with pytest.raises(FileNotFoundError, match="train the stage that writes it"):
        load_frozen(fresh, tmp_path / "missing.pt")
    with pytest.raises(KeyError, match="entries"):
        load_frozen(fresh, tmp_path / "m.pt", key="autoencoder")
