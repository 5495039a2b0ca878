"""A short report of what a data module will feed the model: counts, split, shape, intensities.

Example:
    >>> stats = dataset_statistics(train_ds, val_ds, pairing=report)
    >>> print(stats.format())
    train 90 / val 10 (90% / 10%)
    shape (1, 256, 256), float32
    range [-2.1, 4.3], mean 0.12, std 0.71 (over 32 training items)
    pairing: data/edente: 100 images, data/dente: 100 images, 100 pairs
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from .pairing import PairingReport

__all__ = ["DatasetStatistics", "dataset_statistics"]


@dataclass(frozen=True)
class DatasetStatistics:
    """Counts, split and intensity summary of a train/validation pair of datasets.

    Intensities are over the first ``n_sampled`` training items after preprocessing (what
    the model sees), every image of an item included.
    """

    n_train: int
    n_val: int
    shape: tuple[int, ...]
    dtype: str
    minimum: float
    maximum: float
    mean: float
    std: float
    n_sampled: int
    pairing: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def train_fraction(self) -> float:
        total = self.n_train + self.n_val
        return self.n_train / total if total else 0.0

    def format(self) -> str:
        lines = [
            f"train {self.n_train} / val {self.n_val} ({self.train_fraction:.0%} / {1 - self.train_fraction:.0%})",
            f"shape {self.shape}, {self.dtype}",
            f"range [{self.minimum:.4g}, {self.maximum:.4g}], mean {self.mean:.4g}, std {self.std:.4g} "
            f"(over {self.n_sampled} training items)",
        ]
        if self.pairing:
            lines.append(f"pairing: {self.pairing}")
        lines.extend(f"{k}: {v}" for k, v in self.extra.items())
        return "\n".join(lines)


def _images(item: Any) -> Sequence[torch.Tensor]:
    if isinstance(item, torch.Tensor):
        return [item]
    if isinstance(item, dict):
        return [v for v in item.values() if isinstance(v, torch.Tensor)]
    return [v for v in item if isinstance(v, torch.Tensor)]


def dataset_statistics(
    train: Dataset,
    val: Dataset | None,
    pairing: PairingReport | None = None,
    max_items: int = 32,
    **extra: Any,
) -> DatasetStatistics:
    """Summarise ``train`` / ``val`` (items are tensors, tuples of tensors or dicts of them)."""
    n_train = len(train)  # type: ignore[arg-type]
    total = torch.zeros((), dtype=torch.float64)
    total_sq = torch.zeros((), dtype=torch.float64)
    count = 0
    lo, hi = float("inf"), float("-inf")
    shape: tuple[int, ...] = ()
    dtype = ""
    n_sampled = min(max_items, n_train)
    for i in range(n_sampled):
        for image in _images(train[i]):
            values = image.detach().double()
            shape, dtype = tuple(image.shape), str(image.dtype).replace("torch.", "")
            total += values.sum()
            total_sq += (values**2).sum()
            count += values.numel()
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    mean = float(total / count) if count else float("nan")
    var = float(total_sq / count) - mean**2 if count else float("nan")
    return DatasetStatistics(
        n_train=n_train,
        n_val=len(val) if val is not None else 0,  # type: ignore[arg-type]
        shape=shape,
        dtype=dtype,
        minimum=lo,
        maximum=hi,
        mean=mean,
        std=max(var, 0.0) ** 0.5 if count else float("nan"),
        n_sampled=n_sampled,
        pairing=pairing.summary() if pairing is not None else "",
        extra=dict(extra),
    )
