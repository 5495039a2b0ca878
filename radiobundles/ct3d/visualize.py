"""Image / ground truth / prediction slice panels, as plain RGB arrays (no plotting library needed).

Used for TensorBoard (the ``ct_segmentation_3d`` bundle's ``scripts.handlers.TensorBoardSlicePanel``) and for the
demo's overlay figure. Volumes are ``[X, Y, Z]`` voxel arrays (a leading channel axis is fine:
one-hot channels are turned back into a label map); the panel shows the slice through ``axis``
with the most ground-truth foreground, so small structures are not missed.

Example:
    >>> panel = slice_panel(image, label, pred)          # uint8 [H, 3 * W + 2 * gap, 3]
    >>> writer.add_image("val/image_label_pred", panel, step, dataformats="HWC")
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PALETTE", "best_slice", "label_map", "overlay", "slice_panel", "to_display"]

# background, then well-separated colours (Kelly / Tableau-like) for classes 1, 2, ...
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
    ],
    dtype=np.uint8,
)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def label_map(x: Any) -> np.ndarray:
    """An integer ``[X, Y, Z]`` label map from ``[C, X, Y, Z]`` one-hot/probabilities, ``[1, X, Y, Z]`` or ``[X, Y, Z]``."""
    a = _numpy(x)
    if a.ndim == 4:
        a = a.argmax(0) if a.shape[0] > 1 else a[0]
    return np.rint(a).astype(np.int64)


def best_slice(label: Any, axis: int = 2) -> int:
    """Index along ``axis`` of the slice with the most foreground (the middle one if there is none)."""
    lab = label_map(label)
    other = tuple(a for a in range(3) if a != axis)
    counts = (lab > 0).sum(axis=other)
    return int(counts.argmax()) if counts.max() > 0 else lab.shape[axis] // 2


def to_display(plane: np.ndarray) -> np.ndarray:
    """Voxel plane ``[i, j]`` to screen rows/columns: ``i`` left to right, ``j`` bottom to top."""
    return np.ascontiguousarray(plane.T[::-1])


def overlay(gray: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB uint8 of a ``[H, W]`` image in ``[0, 1]`` with labelled pixels tinted by :data:`PALETTE`."""
    rgb = np.repeat(np.clip(gray, 0, 1)[..., None] * 255.0, 3, axis=-1)
    mask = labels > 0
    colours = PALETTE[np.clip(labels, 0, len(PALETTE) - 1)].astype(np.float64)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colours[mask]
    return rgb.astype(np.uint8)


def _normalise(image: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        lo, hi = np.percentile(image, [0.5, 99.5])
    else:
        lo, hi = window
    return (image - lo) / max(float(hi - lo), 1e-6)


def slice_panel(
    image: Any,
    label: Any,
    pred: Any,
    axis: int = 2,
    index: int | None = None,
    window: tuple[float, float] | None = (0.0, 1.0),
    gap: int = 2,
) -> np.ndarray:
    """``[image | image + ground truth | image + prediction]`` of one slice, uint8 ``[H, W, 3]``.

    Args:
        image: ``[1, X, Y, Z]`` or ``[X, Y, Z]`` intensities.
        label / pred: label maps or one-hot channels (see :func:`label_map`).
        axis: slicing axis (2: axial for RAS-like voxel order).
        index: slice index (default: :func:`best_slice` of ``label``).
        window: intensity range shown black to white (``None``: 0.5-99.5 percentiles).
        gap: white pixels between the three views.
    """
    img = _numpy(image).astype(np.float64)
    if img.ndim == 4:
        img = img[0]
    lab, prd = label_map(label), label_map(pred)
    if not img.shape == lab.shape == prd.shape:
        raise ValueError(f"image {img.shape}, label {lab.shape} and prediction {prd.shape} must share a shape")
    index = best_slice(lab, axis) if index is None else int(index)
    take = [slice(None)] * 3
    take[axis] = index
    gray = to_display(_normalise(img[tuple(take)], window))
    views = [
        overlay(gray, np.zeros_like(gray, dtype=np.int64)),
        overlay(gray, to_display(lab[tuple(take)])),
        overlay(gray, to_display(prd[tuple(take)])),
    ]
    spacer = np.full((gray.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([views[0], spacer, views[1], spacer, views[2]], axis=1)
