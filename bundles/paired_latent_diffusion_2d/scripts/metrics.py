"""PSNR and SSIM for images without a fixed intensity scale.

Normalised slices (z-scores over the anatomy) have no natural peak value, so a fixed
``max_val`` / ``data_range`` would make PSNR and SSIM depend on an arbitrary constant. By
default these metrics take each reference image's own range (``max - min``) as its data
range; pass a number to fix it. Everything else is MONAI's (``compute_ssim_and_cs``,
``RegressionMetric`` reduction), and both work with ``monai.handlers.IgniteMetricHandler``.

Example:
    >>> psnr = TargetRangePSNRMetric()
    >>> psnr(y_pred=generated, y=target)      # per image, [B, 1]
    >>> psnr.aggregate()
"""

from __future__ import annotations

import torch
from monai.metrics.regression import RegressionMetric, SSIMMetric, compute_ssim_and_cs

__all__ = ["TargetRangePSNRMetric", "TargetRangeSSIMMetric", "reference_range"]


def reference_range(y: torch.Tensor, data_range: float | None) -> torch.Tensor:
    """``[B, 1, ...]`` data range per image: ``max - min`` of ``y`` (1 for a constant image), or ``data_range``."""
    shape = (y.shape[0],) + (1,) * (y.ndim - 1)
    if data_range is not None:
        return torch.full(shape, float(data_range), device=y.device, dtype=torch.float32)
    flat = y.detach().float().flatten(1)
    span = flat.max(dim=1).values - flat.min(dim=1).values
    return torch.where(span > 0, span, torch.ones_like(span)).reshape(shape)


class TargetRangePSNRMetric(RegressionMetric):
    """PSNR in dB per image: ``10 log10(range² / MSE)`` with the reference's own range by default."""

    def __init__(self, data_range: float | None = None, reduction: str = "mean", get_not_nans: bool = False) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.data_range = data_range

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mse = (y_pred.float() - y.float()).pow(2).flatten(1).mean(dim=1, keepdim=True).clamp_min(1e-12)
        peak = reference_range(y, self.data_range).flatten(1)[:, :1]
        return 10.0 * torch.log10(peak.pow(2) / mse)


class TargetRangeSSIMMetric(SSIMMetric):
    """MONAI's SSIM (Gaussian window 11, sigma 1.5) with a per-image data range by default."""

    def __init__(self, spatial_dims: int = 2, data_range: float | None = None, **kwargs: object) -> None:
        super().__init__(spatial_dims=spatial_dims, data_range=1.0, **kwargs)  # type: ignore[arg-type]
        self.fixed_range = data_range

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ssim_map, _ = compute_ssim_and_cs(
            y_pred=y_pred,
            y=y,
            spatial_dims=self.spatial_dims,
            data_range=reference_range(y, self.fixed_range),  # type: ignore[arg-type]
            kernel_type=self.kernel_type,
            kernel_size=self.kernel_size,
            kernel_sigma=self.kernel_sigma,
            k1=self.k1,
            k2=self.k2,
        )
        return ssim_map.flatten(1).mean(dim=1, keepdim=True)
