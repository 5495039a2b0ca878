"""Figures and reference numbers for a finished run: curves, overlays, Dice of files, baselines.

* :func:`read_scalars` / :func:`plot_training_curves`: TensorBoard event files to a PNG
  (training loss, validation mean Dice, learning rate).
* :func:`plot_overlays`: image / ground truth / prediction panels of several subjects to a PNG.
* :func:`dice_per_class`: Dice of predicted against reference label files, per subject and class.
* :func:`constant_prediction_dice`: the best a constant predictor does: every voxel labelled as
  class ``c``, for each class, scored as above. A trained model has to beat it clearly.

Matplotlib is imported only by the plotting functions.

Example:
    >>> plot_training_curves("runs", "training_curves.png")
    >>> dice_per_class({"case_000": ("pred/case_000_seg.nii.gz", "labelsTs/case_000.nii.gz")}, num_classes=4)
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np

from radiobundles.ct3d.visualize import slice_panel

__all__ = [
    "constant_prediction_dice",
    "dice_per_class",
    "plot_overlays",
    "plot_training_curves",
    "read_scalars",
]


def read_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the event files under ``log_dir``: ``tag -> [(step, value), ...]``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True)):
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series.setdefault(tag, []).extend((e.step, float(e.value)) for e in acc.Scalars(tag))
    return {tag: sorted(values) for tag, values in series.items()}


def plot_training_curves(log_dir: str, png: str, baseline: float | None = None) -> str:
    """Loss, validation mean Dice and learning rate from TensorBoard logs, side by side.

    Args:
        log_dir: the bundle's ``log_dir``.
        png: output file.
        baseline: a reference Dice drawn as a dashed line (e.g. :func:`constant_prediction_dice`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(log_dir)
    if not scalars:
        raise ValueError(f"no TensorBoard scalars under {log_dir!r}; was the training run logged there?")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    loss_ax, dice_ax, lr_ax = axes
    if "train_loss" in scalars:
        steps, values = zip(*scalars["train_loss"])
        loss_ax.plot(steps, values, color="0.7", lw=0.8, label="per iteration")
    if "epoch/train_loss" in scalars:
        epochs, values = zip(*scalars["epoch/train_loss"])
        per_epoch = len(scalars.get("train_loss", [])) / max(len(epochs), 1)
        loss_ax.plot([e * per_epoch for e in epochs], values, "o-", color="C0", label="epoch mean")
    loss_ax.set(title="training loss (Dice + CE)", xlabel="iteration")
    loss_ax.legend()
    if "val_mean_dice" in scalars:
        epochs, values = zip(*scalars["val_mean_dice"])
        dice_ax.plot(epochs, values, "o-", color="C2", label="validation mean Dice")
    if baseline is not None:
        dice_ax.axhline(baseline, ls="--", color="C3", label=f"constant predictor ({baseline:.3f})")
    dice_ax.set(title="validation mean Dice (sliding window)", xlabel="epoch", ylim=(0, 1))
    dice_ax.legend(loc="lower right")
    if "epoch/lr" in scalars:
        epochs, values = zip(*scalars["epoch/lr"])
        lr_ax.plot(epochs, values, "o-", color="C1")
    lr_ax.set(title="learning rate", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def plot_overlays(
    cases: Sequence[Mapping[str, Any]], png: str, window: tuple[float, float] = (-200.0, 600.0), axis: int = 2
) -> str:
    """One row per case: image / ground truth / prediction, at the slice with most ground truth.

    Args:
        cases: dicts with ``subject_id``, ``image``, ``label``, ``pred`` (NIfTI paths or arrays) and
            optionally ``dice`` (shown in the row title).
        png: output file.
        window: image intensities shown black to white (HU for CT).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not cases:
        raise ValueError("no cases to draw")
    fig, axes = plt.subplots(len(cases), 1, figsize=(10, 3.4 * len(cases)), squeeze=False)
    for ax, case in zip(axes[:, 0], cases):
        image, label, pred = (_load(case[k]) for k in ("image", "label", "pred"))
        ax.imshow(slice_panel(image, label, pred, axis=axis, window=window))
        title = f"{case['subject_id']}: image | ground truth | prediction"
        if case.get("dice") is not None:
            title += f"  (mean Dice {case['dice']:.3f})"
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _load(item: Any) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        return np.asanyarray(nib.load(os.fspath(item)).dataobj)
    return np.asarray(item)


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    # MONAI's Dice, as the bundle's metrics: nan where the reference lacks the class (ignore_empty)
    import torch
    from monai.metrics import compute_dice

    def channel(mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]

    return float(compute_dice(channel(pred), channel(ref), include_background=True, ignore_empty=True)[0, 0])


def dice_per_class(pairs: Mapping[str, tuple[Any, Any]], num_classes: int) -> dict[str, list[float]]:
    """``subject -> [Dice of class 1, ..., num_classes - 1]`` for ``subject -> (prediction, reference)``.

    A class absent from the reference scores ``nan`` (left out of means), as in the bundle's evaluation.

    Raises:
        ValueError: a prediction and its reference differ in shape.
    """
    out = {}
    for subject, (pred_item, ref_item) in pairs.items():
        pred, ref = np.rint(_load(pred_item)).astype(np.int64), np.rint(_load(ref_item)).astype(np.int64)
        if pred.shape != ref.shape:
            raise ValueError(f"{subject}: prediction {pred.shape} and reference {ref.shape} differ in shape")
        out[subject] = [_dice(pred == c, ref == c) for c in range(1, num_classes)]
    return out


def constant_prediction_dice(references: Mapping[str, Any], num_classes: int) -> dict[str, list[float]]:
    """Dice per subject and class of the constant predictor "every voxel is class ``c``".

    Among predictors that ignore the image, predicting ``c`` everywhere maximises the Dice of
    class ``c`` (predicting background gives 0), so this is the trivial baseline to beat.
    """
    out = {}
    for subject, ref_item in references.items():
        ref = np.rint(_load(ref_item)).astype(np.int64)
        out[subject] = [_dice(np.ones_like(ref, dtype=bool), ref == c) for c in range(1, num_classes)]
    return out
