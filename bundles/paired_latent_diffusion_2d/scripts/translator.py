"""The whole condition -> target translation as one ``nn.Module`` (the bundle's ``network_def``).

Training and the inference evaluator drive the autoencoder and the diffusion UNet step by step
(``engines.py``); this module wraps the same sampling so that tools that expect one network
mapping an input image to an output image (MONAI's ``verify_net_in_out``, the Model Zoo CI, a
user calling the model directly) have one.

Example:
    >>> translator = PairedTranslator(autoencoder, diffusion, LatentConditioner(), DDIMScheduler())
    >>> translator(condition).shape        # condition [B, 1, H, W] -> generated target [B, 1, H, W]
"""

from __future__ import annotations

import torch
from monai.inferers import LatentDiffusionInferer
from monai.networks.schedulers import Scheduler
from torch import nn

from .latent import LatentConditioner

__all__ = ["PairedTranslator"]


class PairedTranslator(nn.Module):
    """Encode the condition, sample a latent with DDIM, decode it: the generated target image.

    Args:
        autoencoder: the first stage (``AutoencoderKL``).
        diffusion: the latent diffusion UNet.
        conditioner: how the condition enters the UNet (as in training).
        scheduler: the sampling scheduler; its timesteps are set to ``num_inference_steps``.
        num_inference_steps: denoising steps.
        scale_factor: the latent scale written at training (``read_latent_scale``).
        seed: seed of the initial noise (``None``: the global generator).
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        diffusion: nn.Module,
        conditioner: LatentConditioner,
        scheduler: Scheduler,
        num_inference_steps: int = 50,
        scale_factor: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.diffusion = diffusion
        self.conditioner = conditioner
        self.scheduler = scheduler
        self.num_inference_steps = int(num_inference_steps)
        self.scale_factor = float(scale_factor)
        self.seed = seed

    @torch.no_grad()
    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        self.scheduler.set_timesteps(self.num_inference_steps)
        inferer = LatentDiffusionInferer(self.scheduler, scale_factor=self.scale_factor)
        latent, context = self.conditioner(self.autoencoder, condition, self.scale_factor)
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=condition.device).manual_seed(self.seed)
        noise = torch.randn(latent.shape, generator=generator, device=latent.device, dtype=latent.dtype)
        generated = inferer.sample(
            input_noise=noise,
            autoencoder_model=self.autoencoder,
            diffusion_model=self.diffusion,
            scheduler=self.scheduler,
            conditioning=context,
            mode=self.conditioner.mode,
            verbose=False,
        )
        return generated.float()
