"""Fixtures: tiny synthetic paired TIF folders, a store made from them, tiny networks, a stand-in engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from monai.engines.utils import default_prepare_batch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

from bundles.paired_latent_diffusion_2d.scripts.synthetic import PairedTifDataset, make_paired_tifs


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks gain nothing from two threads, and on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def paired_tifs(tmp_path_factory: pytest.TempPathFactory) -> PairedTifDataset:
    """Ten matched pairs of 24x20 uint16 slices in ``edente/`` and ``dente/``."""
    return make_paired_tifs(str(tmp_path_factory.mktemp("paired")), n_pairs=10, shape=(24, 20), seed=1)


@pytest.fixture(scope="module")
def paired_store(paired_tifs: PairedTifDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same pairs ingested into a store (collections ``edente`` and ``dente``)."""
    from radiobject_adapter.io.tif import ingest_tifs

    uri = str(tmp_path_factory.mktemp("paired_store") / "store")
    report = ingest_tifs(uri, {"edente": paired_tifs.target_dir, "dente": paired_tifs.condition_dir}, progress=False)
    assert report.ok, report.summary()
    return uri


def tiny_autoencoder() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=(8, 16),
        latent_channels=2,
        num_res_blocks=1,
        norm_num_groups=4,
        attention_levels=(False, False),
        with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
    )


def tiny_unet(in_channels: int = 2, context_dim: int | None = 10) -> DiffusionModelUNet:
    torch.manual_seed(0)
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=2,
        channels=(8, 16),
        attention_levels=(False, True),
        num_head_channels=(0, 8),
        num_res_blocks=1,
        norm_num_groups=4,
        with_conditioning=context_dim is not None,
        cross_attention_dim=context_dim,
    )


class FakeEngine(SimpleNamespace):
    """The attributes of a MONAI engine that the steps use, and a record of fired events."""

    def __init__(self, **kwargs):
        defaults = dict(
            amp=False,
            amp_kwargs={},
            scaler=None,
            non_blocking=False,
            to_kwargs={},
            prepare_batch=default_prepare_batch,
            state=SimpleNamespace(device=torch.device("cpu"), epoch=1, iteration=1, output=None),
            events=[],
        )
        super().__init__(**{**defaults, **kwargs})

    def fire_event(self, event):
        self.events.append(event)


@pytest.fixture
def make_autoencoder():
    """Factory of a tiny seeded AutoencoderKL (2 latent channels, downsampling 2)."""
    return tiny_autoencoder


@pytest.fixture
def make_unet():
    """Factory of a tiny seeded DiffusionModelUNet over 2 latent channels."""
    return tiny_unet


@pytest.fixture
def make_engine():
    """Factory of a :class:`FakeEngine`."""
    return FakeEngine
