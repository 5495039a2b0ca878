"""Paired 2D image translation (e.g. dentate -> edentulous CBCT slices): data, models glue, engines.

The bundle ``bundles/paired_latent_diffusion_2d`` references these modules by dotted path:

* :mod:`.data` — ``create_vae_dataloaders`` / ``create_ldm_dataloaders`` over TIF folders or a store
* :mod:`.pairing` — matching target and condition images by name, reporting the unpaired
* :mod:`.transforms` — the preprocessing pipeline (MONAI transforms), ``DictToTuple``
* :mod:`.engines` — iteration steps for MONAI's trainer / evaluator (VAE-GAN, latent diffusion)
* :mod:`.latent` — latent scale factor, condition encoding, frozen checkpoints
* :mod:`.losses`, :mod:`.metrics`, :mod:`.handlers`, :mod:`.io`, :mod:`.stats`, :mod:`.synthetic`

Example:
    >>> from radiobundles.paired import create_ldm_dataloaders, make_paired_tifs
    >>> ds = make_paired_tifs("data", n_pairs=8, shape=(32, 32))
    >>> train, val = create_ldm_dataloaders(ds.root, batch_size=4, patch_size=32)
"""

from __future__ import annotations

from radiobundles.paired.data import (
    condition_datalist,
    create_inference_dataloader,
    create_ldm_dataloaders,
    create_vae_dataloaders,
    select_names,
)
from radiobundles.paired.engines import (
    AutoencoderKLEvalStep,
    AutoencoderKLTrainStep,
    LatentDiffusionSampleStep,
    LatentDiffusionTrainStep,
    loss_terms,
)
from radiobundles.paired.handlers import SampleGridSaver, ThroughputLogger
from radiobundles.paired.io import SaveGeneratedImaged, TifReader
from radiobundles.paired.latent import LatentConditioner, LatentScale, load_frozen, read_latent_scale
from radiobundles.paired.losses import AutoencoderKLLoss, kl_divergence
from radiobundles.paired.metrics import TargetRangePSNRMetric, TargetRangeSSIMMetric
from radiobundles.paired.pairing import ImageSource, PairingReport, UnpairedImagesError, open_source, pair_sources
from radiobundles.paired.stats import DatasetStatistics, dataset_statistics
from radiobundles.paired.synthetic import PairedTifDataset, make_paired_tifs
from radiobundles.paired.transforms import DictToTuple, paired_transforms

__all__ = [
    "AutoencoderKLEvalStep",
    "AutoencoderKLLoss",
    "AutoencoderKLTrainStep",
    "DatasetStatistics",
    "DictToTuple",
    "ImageSource",
    "LatentConditioner",
    "LatentDiffusionSampleStep",
    "LatentDiffusionTrainStep",
    "LatentScale",
    "PairedTifDataset",
    "PairingReport",
    "SampleGridSaver",
    "SaveGeneratedImaged",
    "TargetRangePSNRMetric",
    "TargetRangeSSIMMetric",
    "ThroughputLogger",
    "TifReader",
    "UnpairedImagesError",
    "condition_datalist",
    "create_inference_dataloader",
    "create_ldm_dataloaders",
    "create_vae_dataloaders",
    "dataset_statistics",
    "kl_divergence",
    "load_frozen",
    "loss_terms",
    "make_paired_tifs",
    "open_source",
    "pair_sources",
    "paired_transforms",
    "read_latent_scale",
    "select_names",
]
