"""Middle-slice views for MONAI's ``TensorBoardImageHandler``: image / label / prediction triplets.

The handler plots ``batch_transform(batch)[0][i]`` (image), ``[1][i]`` (label) and
``output_transform(output)[i]`` (prediction); these functions hand it the axial slice at the
middle of the volume (``D // 2``) and the predicted label map rather than its one-hot channels.

Example:
    >>> TensorBoardImageHandler(summary_writer=w, batch_transform=middle_slice_pair,
    ...                         output_transform=middle_slice_prediction, max_channels=1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["middle_slice", "middle_slice_pair", "middle_slice_prediction"]


def middle_slice(x: torch.Tensor) -> torch.Tensor:
    """``[C, H, W, D] -> [C, H, W]`` at ``D // 2``; 2D ``[C, H, W]`` passes through."""
    x = torch.as_tensor(x).detach().cpu()
    return x[..., x.shape[-1] // 2] if x.ndim == 4 else x


def _items(data: Any, key: str) -> list[torch.Tensor]:
    if isinstance(data, Mapping):  # a collated batch
        return list(data[key])
    if isinstance(data, Sequence):  # decollated: one dictionary per volume
        return [item[key] for item in data]
    raise TypeError(f"expected a batch dictionary or a list of them, got {type(data).__name__}")


def middle_slice_pair(batch: Any, image_key: str = "image", label_key: str = "label") -> tuple[list, list]:
    """``batch_transform``: middle slices of the images and labels of a validation batch."""
    images = [middle_slice(x) for x in _items(batch, image_key)]
    labels = [middle_slice(x) for x in _items(batch, label_key)]
    if labels and labels[0].shape[0] > 1:  # one-hot after post-processing: back to a label map
        labels = [x.argmax(0, keepdim=True).float() for x in labels]
    return images, labels


def middle_slice_prediction(output: Any, pred_key: str = "pred") -> list[torch.Tensor]:
    """``output_transform``: middle slice of each predicted label map."""
    preds = [middle_slice(x) for x in _items(output, pred_key)]
    return [x.argmax(0, keepdim=True).float() if x.shape[0] > 1 else x.float() for x in preds]
