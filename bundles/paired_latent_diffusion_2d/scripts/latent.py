"""The latent space glue of the diffusion stage: scale factor, condition encoding, frozen models.

* :class:`LatentScale` — the scale factor ``1 / std(z)`` measured on training data (Rombach
  et al. 2022), kept as a module buffer so it is saved inside the diffusion checkpoint
  and inference uses the value the model was trained with.
* :class:`LatentConditioner` — turns the condition image into what the diffusion UNet
  attends to: the frozen autoencoder's latent mean, as tokens for cross-attention
  (``"crossattn"``, with fixed 2D sine/cosine position channels so a token says where it
  came from) or as extra input channels (``"concat"``).
* :func:`load_frozen` / :func:`read_latent_scale` — checkpoints into evaluation-mode,
  gradient-free modules.

Example:
    >>> scale = LatentScale.from_data(autoencoder, train_loader, device)
    >>> conditioner = LatentConditioner("crossattn", position_channels=8)
    >>> latent, context = conditioner(autoencoder, condition_image, float(scale))
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "CONDITION_MODES",
    "LatentConditioner",
    "LatentScale",
    "load_frozen",
    "position_encoding_2d",
    "read_latent_scale",
]

CONDITION_MODES = ("crossattn", "concat")


def _first_image(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        return batch.get("target", batch.get("image"))
    return batch[0]


class LatentScale(nn.Module):
    """A scalar scale factor stored as a buffer (``state_dict`` key ``value``).

    Example:
        >>> scale = LatentScale.from_data(autoencoder, loader, "cpu", max_batches=4)
        >>> float(scale)
        1.37
    """

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(float(value)))

    def __float__(self) -> float:
        return float(self.value)

    def extra_repr(self) -> str:
        return f"value={float(self):.6g}"

    @classmethod
    @torch.no_grad()
    def from_data(
        cls, autoencoder: nn.Module, loader: Iterable, device: str | torch.device, max_batches: int = 8
    ) -> LatentScale:
        """``1 / std`` of sampled latents of up to ``max_batches`` batches (the target images).

        Under ``torch.distributed`` the variance is averaged over ranks, so every rank uses
        the same factor.
        """
        autoencoder.eval()
        total = torch.zeros(3, dtype=torch.float64, device=device)  # sum, sum of squares, count
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            z = autoencoder.encode_stage_2_inputs(_first_image(batch).to(device)).double()
            total += torch.stack([z.sum(), (z**2).sum(), torch.tensor(float(z.numel()), device=device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
        if total[2] == 0:
            raise ValueError("cannot compute the latent scale factor: the loader yielded no batches")
        mean = total[0] / total[2]
        std = float(torch.sqrt(torch.clamp(total[1] / total[2] - mean**2, min=1e-12)))
        return cls(1.0 / std)


def position_encoding_2d(height: int, width: int, channels: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sine/cosine encoding of ``(row, column)``: ``[height * width, channels]``.

    Half the channels encode the row, half the column (``channels`` must be divisible by 4).
    """
    if channels % 4:
        raise ValueError(f"position channels must be divisible by 4, got {channels}")
    quarter = channels // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freqs
    cols = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freqs
    row_enc = torch.cat([rows.sin(), rows.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    col_enc = torch.cat([cols.sin(), cols.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([row_enc, col_enc], dim=2).reshape(height * width, channels)


class LatentConditioner:
    """Encodes the condition image for the diffusion UNet.

    Args:
        mode: ``"crossattn"`` (tokens; the UNet needs ``with_conditioning=True`` and
            ``cross_attention_dim = context_dim(latent_channels)``) or ``"concat"`` (the
            latent joins the UNet input; ``in_channels = 2 * latent_channels``).
        position_channels: sine/cosine position channels appended to each token
            (``"crossattn"`` only; 0 for none).

    Calling it returns ``(latent, condition)``: the scaled latent mean of the condition
    (its shape is the shape of the noise to draw) and what goes to the inferer's
    ``condition`` / ``conditioning`` argument.
    """

    def __init__(self, mode: str = "crossattn", position_channels: int = 8) -> None:
        if mode not in CONDITION_MODES:
            raise ValueError(f"condition mode must be one of {CONDITION_MODES}, got {mode!r}")
        if position_channels % 4:
            raise ValueError(f"position_channels must be divisible by 4, got {position_channels}")
        self.mode = mode
        self.position_channels = position_channels if mode == "crossattn" else 0

    def context_dim(self, latent_channels: int) -> int:
        """Width of each cross-attention token."""
        return latent_channels + self.position_channels

    @torch.no_grad()
    def __call__(
        self, autoencoder: nn.Module, image: torch.Tensor, scale_factor: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z_mu, _ = autoencoder.encode(image)
        latent = z_mu * scale_factor
        if self.mode == "concat":
            return latent, latent
        batch, _, height, width = latent.shape
        tokens = latent.flatten(2).transpose(1, 2)  # [B, h*w, C]
        if self.position_channels:
            pos = position_encoding_2d(height, width, self.position_channels, device=latent.device).to(latent.dtype)
            tokens = torch.cat([tokens, pos.expand(batch, -1, -1)], dim=2)
        return latent, tokens


def load_frozen(
    module: nn.Module, path: str | os.PathLike, device: str | torch.device = "cpu", key: str | None = None
) -> nn.Module:
    """Load a checkpoint into ``module`` and return it on ``device``, in eval mode, without gradients.

    Args:
        module: the network definition.
        path: checkpoint file (a state dict, or a dict of them when ``key`` is given).
        device: where to put the module.
        key: the entry of a multi-object checkpoint (e.g. ``"diffusion"``).

    Raises:
        FileNotFoundError: no checkpoint; the message says which stage writes it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"checkpoint {os.fspath(path)!r} not found; train the stage that writes it first "
            "(train_autoencoder.json writes model_autoencoder.pt, train_diffusion.json model_ldm.pt)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        if key not in state:
            raise KeyError(f"{os.fspath(path)!r} has no entry {key!r}; entries: {sorted(state)}")
        state = state[key]
    module.load_state_dict(state)
    module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def read_latent_scale(path: str | os.PathLike, key: str = "latent_scale") -> float:
    """The scale factor saved with the diffusion model (see :class:`LatentScale`)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if key not in state:
        raise KeyError(f"{os.fspath(path)!r} has no {key!r}; was it written by train_diffusion.json?")
    return float(state[key]["value"])
