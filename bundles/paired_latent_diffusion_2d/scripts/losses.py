"""The autoencoder's training objective: L1 reconstruction + KL + perceptual.

The perceptual term is MONAI's ``PerceptualLoss``. Its pretrained weights are downloads
(torchvision, LPIPS, torch.hub), so the bundle's default builds it offline:
``network_type="resnet50", pretrained=False`` — features of a randomly initialised
ResNet-50, a weaker but still useful structural signal. ``docs/README.md`` of the bundle
says how to switch to pretrained weights.

Example:
    >>> loss = AutoencoderKLLoss(kl_weight=1e-6, perceptual_weight=1e-3,
    ...                          perceptual_loss=PerceptualLoss(2, "resnet50", pretrained=False))
    >>> terms = loss(reconstruction, image, z_mu, z_sigma)
    >>> terms["loss"].backward()
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AutoencoderKLLoss", "kl_divergence"]


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over latent elements, averaged over the batch.

    Example:
        >>> kl_divergence(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
        tensor(0.)
    """
    var = z_sigma.float().pow(2)
    kl = 0.5 * (z_mu.float().pow(2) + var - torch.log(var.clamp_min(1e-12)) - 1.0)
    return kl.flatten(1).sum(dim=1).mean()


class AutoencoderKLLoss(nn.Module):
    """``L1 + kl_weight * KL + perceptual_weight * perceptual``, returned term by term.

    Args:
        kl_weight: weight of the KL term (small: 1e-6 keeps the latent close to the image).
        perceptual_weight: weight of the perceptual term; 0 skips it.
        perceptual_loss: a module ``(input, target) -> scalar`` such as MONAI ``PerceptualLoss``.

    Returns (from ``forward``): a dict with ``loss`` (the total to back-propagate) and the
    terms ``loss_l1``, ``loss_kl``, ``loss_perceptual`` (detached).
    """

    def __init__(
        self, kl_weight: float = 1e-6, perceptual_weight: float = 1e-3, perceptual_loss: nn.Module | None = None
    ) -> None:
        super().__init__()
        if perceptual_weight > 0 and perceptual_loss is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual_loss module (or set perceptual_weight to 0)")
        self.kl_weight = kl_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual_loss = perceptual_loss

    def forward(
        self, reconstruction: torch.Tensor, target: torch.Tensor, z_mu: torch.Tensor, z_sigma: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        l1 = torch.nn.functional.l1_loss(reconstruction.float(), target.float())
        kl = kl_divergence(z_mu, z_sigma)
        total = l1 + self.kl_weight * kl
        perceptual = torch.zeros((), device=l1.device)
        if self.perceptual_weight > 0 and self.perceptual_loss is not None:
            perceptual = self.perceptual_loss(reconstruction.float(), target.float())
            total = total + self.perceptual_weight * perceptual
        return {
            "loss": total,
            "loss_l1": l1.detach(),
            "loss_kl": kl.detach(),
            "loss_perceptual": perceptual.detach(),
        }
