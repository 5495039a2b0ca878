"""Smoke tests of the paired latent diffusion bundle through MONAI's bundle runner.

Tiny synthetic pairs (40x36 TIFs, resized to 32x32) and tiny networks: the autoencoder is
trained with the documented ``python -m monai.bundle run`` command, the diffusion stage
and inference in-process with ``ConfigWorkflow`` (the object that command builds), so the
tests can read the engines' metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigWorkflow

from bundles.paired_latent_diffusion_2d.scripts.synthetic import PairedTifDataset, make_paired_tifs
from radiobundles.resources import bundle_environ, bundle_scripts

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "paired_latent_diffusion_2d"
CONFIGS = BUNDLE / "configs"
AE_CONFIG = str(CONFIGS / "train_autoencoder.json")
LDM_CONFIGS = [AE_CONFIG, str(CONFIGS / "train_diffusion.json")]
INFER_CONFIGS = [str(CONFIGS / "inference.json")]  # standalone, as the Model Zoo runs it

TINY = {
    "patch_size": [32, 32],
    "batch_size": 4,
    "num_workers": 0,
    "max_epochs": 2,
    "train_split": 0.75,
    "latent_channels": 2,
    "ae_channels": [8, 16],
    "ae_norm_groups": 4,
    "ae_res_blocks": 1,
    "adversarial_warmup_epochs": 1,
    "unet_channels": [16, 32],
    "unet_attention_levels": [False, True],
    "unet_head_channels": [0, 16],
    "unet_res_blocks": 1,
    "unet_norm_groups": 8,
    "num_inference_steps": 5,
    # one thread: on a shared 2-core machine two OpenMP threads can be 20x slower (oversubscription)
    "cpu_threads": 1,
}


def _cli_value(value) -> str:
    return json.dumps(value).replace("false", "False").replace("true", "True")


def _workflow(configs: list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(config_file=configs, workflow_type=workflow_type, **{**TINY, **overrides})
    wf.initialize()
    return wf


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def scripts():
    """The bundle's own ``scripts`` package: what its configs' ``scripts.…`` name in this process."""
    with bundle_scripts(BUNDLE) as package:
        yield package


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> PairedTifDataset:
    return make_paired_tifs(str(tmp_path_factory.mktemp("dental")), n_pairs=6, shape=(40, 36), seed=3)


@pytest.fixture(scope="module")
def autoencoder_stage(data: PairedTifDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Train the autoencoder with the documented command line; return (bundle_root, log)."""
    root = tmp_path_factory.mktemp("bundle_run")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", AE_CONFIG]
    cmd += ["--bundle_root", str(root), "--dataset_dir", data.root]
    for key, value in TINY.items():
        cmd += [f"--{key}", _cli_value(value)]
    env = bundle_environ(BUNDLE, {**os.environ, "TQDM_DISABLE": "1"})
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root, done.stdout + done.stderr


@pytest.fixture(scope="module")
def diffusion_stage(autoencoder_stage, data: PairedTifDataset) -> tuple[Path, ConfigWorkflow, str]:
    root, _ = autoencoder_stage
    ae_digest = _digest(root / "models" / "model_autoencoder.pt")
    wf = _workflow(LDM_CONFIGS, "train", bundle_root=str(root), dataset_dir=data.root)
    wf.run()
    wf.finalize()
    return root, wf, ae_digest


@pytest.mark.slow
@pytest.mark.integration
def test_autoencoder_stage_trains_through_the_bundle_runner(autoencoder_stage):
    root, log = autoencoder_stage
    models = root / "models"
    assert (models / "model_autoencoder.pt").is_file() and (models / "model_autoencoder_final.pt").is_file()
    assert "dataset statistics" in log and "train 8 / val 4" in log
    assert "steps/s" in log
    assert "loss_generator_adv" in log  # the adversarial term switched on after the warm-up epoch
    assert "val_ssim" in log and "val_psnr" in log and "val_mse" in log
    assert (root / "eval" / "samples" / "autoencoder_reconstructions_epoch_0002.png").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (root / "eval" / "tensorboard").iterdir())


@pytest.mark.slow
@pytest.mark.integration
def test_autoencoder_checkpoint_loads_into_the_bundle_network(autoencoder_stage):
    root, _ = autoencoder_stage
    wf = _workflow([AE_CONFIG], "train", bundle_root=str(root), dataset_dir=str(root))
    net = wf.parser.get_parsed_content("autoencoder_def")
    net.load_state_dict(torch.load(root / "models" / "model_autoencoder.pt", weights_only=True))
    reconstruction, z_mu, _ = net(torch.rand(1, 1, 32, 32))
    assert reconstruction.shape == (1, 1, 32, 32) and z_mu.shape == (1, 2, 16, 16)


@pytest.mark.slow
@pytest.mark.integration
def test_diffusion_stage_trains_on_the_frozen_autoencoder_and_keeps_the_scale_factor(diffusion_stage):
    root, wf, ae_digest = diffusion_stage
    assert _digest(root / "models" / "model_autoencoder.pt") == ae_digest
    checkpoint = torch.load(root / "models" / "model_ldm.pt", weights_only=True)
    assert set(checkpoint) == {"diffusion", "latent_scale"}
    scale = float(checkpoint["latent_scale"]["value"])
    assert scale > 0 and scale == pytest.approx(wf.parser.get_parsed_content("inferer").scale_factor)
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and math.isfinite(trainer.state.output["loss"].item())
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    assert {"val_mse", "val_psnr", "val_ssim"} <= set(metrics)
    assert all(math.isfinite(float(v)) for v in metrics.values())
    samples = root / "eval" / "samples"
    assert (samples / "ldm_samples_epoch_0001.png").is_file() and (samples / "ldm_samples_epoch_0002.png").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_inference_writes_a_tif_and_png_per_condition_image_at_its_original_size(diffusion_stage, data):
    root, _, _ = diffusion_stage
    out = root / "generated"
    wf = _workflow(INFER_CONFIGS, "infer", bundle_root=str(root), dataset_dir=data.root, prediction_dir=str(out))
    wf.run()
    wf.finalize()
    for name in data.names:
        image = tifffile.imread(out / f"{name}.tif")
        assert image.shape == (40, 36) and image.dtype == np.float32 and np.isfinite(image).all()
        assert (out / f"{name}.png").is_file()


@pytest.mark.slow
def test_bundle_reads_a_store_made_by_tif_ingest(data, tmp_path):
    from radiobject_adapter.io.tif import ingest_tifs

    store = str(tmp_path / "store")
    assert ingest_tifs(store, {"edente": data.target_dir, "dente": data.condition_dir}, progress=False).ok
    wf = _workflow(
        [AE_CONFIG], "train", bundle_root=str(tmp_path), dataset_dir=store, max_epochs=1, perceptual_weight=0
    )
    wf.run()
    wf.finalize()
    assert (tmp_path / "models" / "model_autoencoder.pt").is_file()


def test_metadata_follows_model_zoo_conventions():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["schema"].startswith("https://") and meta["version"] in meta["changelog"]
    assert (
        meta["monai_version"] == "1.6.1" and meta["pytorch_version"] == "2.14.1"
    )  # newest torch with wheels for py3.10 (zoo CI) and 3.11
    for fmt in ("network_data_format", "autoencoder_data_format"):
        assert {"inputs", "outputs"} <= set(meta[fmt])
        assert all("channel_def" in v for v in meta[fmt]["outputs"].values())
    for name in ("train_autoencoder.json", "train_diffusion.json", "inference.json", "logging.conf"):
        assert (CONFIGS / name).is_file()
    assert (BUNDLE / "LICENSE").is_file() and (BUNDLE / "docs" / "README.md").is_file()
    assert (BUNDLE / "models" / ".gitkeep").is_file()
