"""Per-subject, per-class Dice and 95th-percentile Hausdorff distance (mm), written as CSV.

:class:`SubjectMetricsSaver` is attached to an evaluator whose post-processing leaves one-hot
``pred`` and ``label`` in its output (as the bundle's ``validate#postprocessing`` does). For
every subject and foreground class it records Dice, HD95 in millimetres (from the voxel spacing
of the image affine, so anisotropic CT is measured correctly) and the voxel counts; at the end
of the run it writes

* ``metrics_per_subject.csv``: ``subject_id, class_index, class_name, dice, hd95_mm, label_voxels, pred_voxels``
* ``metrics_summary.json``: means per class and overall, the number of subjects,

and logs one summary line. As in MONAI's ``DiceMetric(ignore_empty=True)`` (the bundle's
``val_mean_dice``), Dice is ``nan`` for a class absent from the reference: false positives there
show in ``pred_voxels``. HD95 is ``nan`` when either is empty (a distance to nothing is
undefined). ``nan`` values are left out of the means.

Example:
    >>> SubjectMetricsSaver(output_dir="eval", class_names=["background", "liver"]).attach(evaluator)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import affine_to_spacing
from monai.metrics import compute_dice, compute_hausdorff_distance

from radiobundles.readers import subject_id_of

__all__ = ["CSV_COLUMNS", "SubjectMetricsSaver", "class_name_list", "segmentation_scores"]

CSV_COLUMNS = ("subject_id", "class_index", "class_name", "dice", "hd95_mm", "label_voxels", "pred_voxels")
logger = logging.getLogger(__name__)


def class_name_list(class_names: Sequence[str] | Mapping[Any, str] | None, num_classes: int) -> list[str]:
    """Names for classes ``0..num_classes-1`` (a list, or a ``channel_def``-style dict); ``class_<i>`` if missing."""
    if isinstance(class_names, Mapping):
        lookup = {int(k): str(v) for k, v in class_names.items()}
    else:
        lookup = dict(enumerate(str(n) for n in (class_names or [])))
    return [lookup.get(i, f"class_{i}") for i in range(num_classes)]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


def segmentation_scores(
    pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float] | None = None, percentile: float = 95.0
) -> list[dict[str, float]]:
    """Dice and HD (``percentile``, in units of ``spacing``) per foreground class of one subject.

    Args:
        pred / label: one-hot ``[C, X, Y, Z]`` (channel 0 = background).
        spacing: voxel size per axis (default 1).
    """
    if pred.shape != label.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and label {tuple(label.shape)} must both be one-hot of one shape")
    y_pred, y = pred[None].float(), label[None].float()
    dice = compute_dice(y_pred, y, include_background=False, ignore_empty=False)[0]
    rows = []
    for c in range(1, pred.shape[0]):
        label_voxels, pred_voxels = int(y[0, c].sum()), int(y_pred[0, c].sum())
        d = float(dice[c - 1]) if label_voxels else float("nan")  # as DiceMetric(ignore_empty=True)
        h = float("nan")
        if label_voxels and pred_voxels:  # a distance to an empty set is undefined
            pair = [0, c]
            h = compute_hausdorff_distance(
                y_pred[:, pair], y[:, pair], percentile=percentile, spacing=list(spacing) if spacing else None
            )
            h = _finite(float(h))
        rows.append(
            {"class_index": c, "dice": d, "hd95_mm": h, "label_voxels": label_voxels, "pred_voxels": pred_voxels}
        )
    return rows


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


class SubjectMetricsSaver:
    """Collects per-subject, per-class scores over an evaluator run and writes CSV + JSON summary.

    Args:
        output_dir: folder for ``metrics_per_subject.csv`` and ``metrics_summary.json``.
        class_names: names by class index (list or ``channel_def`` dict); missing ones are ``class_<i>``.
        percentile: Hausdorff percentile (95: HD95).
        csv_name / summary_name: file names.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str] | Mapping[Any, str] | None = None,
        percentile: float = 95.0,
        csv_name: str = "metrics_per_subject.csv",
        summary_name: str = "metrics_summary.json",
    ) -> None:
        self.output_dir = output_dir
        self.class_names = class_names
        self.percentile = percentile
        self.csv_name, self.summary_name = csv_name, summary_name
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}

    @property
    def csv_path(self) -> str:
        return os.path.join(self.output_dir, self.csv_name)

    @property
    def summary_path(self) -> str:
        return os.path.join(self.output_dir, self.summary_name)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(outputs)
        for out, inp in zip(outputs, batch):
            pred, label = out["pred"], out["label"]
            meta = getattr(out.get("image"), "meta", None) or getattr(pred, "meta", None)
            sid = str(inp.get("subject_id") or subject_id_of(meta, fallback=f"item_{len(self.rows)}"))
            affine = meta.get("affine") if meta else None
            spacing = affine_to_spacing(torch.as_tensor(affine), r=3).tolist() if affine is not None else None
            names = class_name_list(self.class_names, pred.shape[0])
            for row in segmentation_scores(torch.as_tensor(pred), torch.as_tensor(label), spacing, self.percentile):
                self.rows.append({"subject_id": sid, "class_name": names[row["class_index"]], **row})

    def _write(self, engine: Engine) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        with open(self.csv_path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
        per_class: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(r["class_name"] for r in self.rows):
            rows = [r for r in self.rows if r["class_name"] == name]
            per_class[name] = {"dice": _mean([r["dice"] for r in rows]), "hd95_mm": _mean([r["hd95_mm"] for r in rows])}
        subjects = list(dict.fromkeys(r["subject_id"] for r in self.rows))
        self.summary = {
            "subjects": len(subjects),
            "mean_dice": _mean([r["dice"] for r in self.rows]),
            "mean_hd95_mm": _mean([r["hd95_mm"] for r in self.rows]),
            "per_class": per_class,
            "csv": os.path.abspath(self.csv_path),
        }
        with open(self.summary_path, "w") as fh:
            json.dump(self.summary, fh, indent=2, allow_nan=True)
        engine.state.metrics["mean_hd95_mm"] = self.summary["mean_hd95_mm"]
        classes = ", ".join(f"{n} {v['dice']:.3f}" for n, v in per_class.items())
        logger.info(
            f"evaluation of {len(subjects)} subject(s): mean Dice {self.summary['mean_dice']:.4f} ({classes}); "
            f"mean HD95 {self.summary['mean_hd95_mm']:.2f} mm; per subject and class: {self.csv_path}"
        )
