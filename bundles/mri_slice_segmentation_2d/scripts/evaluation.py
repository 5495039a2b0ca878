"""Evaluation of the slice bundle as it was trained: its settings kept, its classes named.

* :func:`save_training_settings` (called by ``train.json``'s ``initialize``) writes the settings an
  evaluation must share with the training run (``slice_size``, the split's ``val_fraction`` and
  ``seed``, ``num_classes``, ``class_names``) next to the checkpoints; :func:`training_settings`
  reads them back in ``evaluate.json``, so ``evaluate`` after ``train --slice_size [96,96]
  --val_fraction 0.3`` uses the same slices and the same validation subjects without repeating
  the overrides (an override given to ``evaluate`` itself still wins).
* :class:`NamedMetricsSaver` is MONAI's ``MetricsSaver`` with the per-class columns named after the
  classes (MONAI writes ``class0``, ``class1``, ...).

Example:
    >>> save_training_settings("models", slice_size=[96, 96], val_fraction=0.3, seed=0, num_classes=2)
    >>> training_settings("models", {"slice_size": [128, 128], "val_fraction": 0.2})["slice_size"]
    [96, 96]
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from monai.handlers import MetricsSaver

__all__ = ["SETTINGS_FILE", "NamedMetricsSaver", "save_training_settings", "training_settings"]

SETTINGS_FILE = "training_settings.json"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def save_training_settings(ckpt_dir: str, **settings: Any) -> str:
    """Write ``settings`` to ``ckpt_dir/training_settings.json`` (atomically); returns the path."""
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.join(ckpt_dir, SETTINGS_FILE)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as fh:
        json.dump(_plain(settings), fh, indent=1)
    os.replace(tmp, path)
    return path


def training_settings(ckpt_dir: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with the settings the training run in ``ckpt_dir`` saved (if any)."""
    path = os.path.join(ckpt_dir, SETTINGS_FILE)
    saved: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path) as fh:
            saved = json.load(fh)
    return {**dict(defaults), **{k: v for k, v in saved.items() if k in defaults}}


class NamedMetricsSaver(MetricsSaver):
    """``MetricsSaver`` whose per-class CSV columns and rows carry the class names.

    Args:
        class_names: names of the classes the metric reports, in its order (for a metric without
            background: the foreground classes).
        **kwargs: as for ``MetricsSaver``.
    """

    def __init__(self, class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_names = [str(n) for n in class_names or []]

    def __call__(self, engine: Any) -> None:
        super().__call__(engine)
        if not self.class_names or self.metric_details is None or not os.path.isdir(self.save_dir):
            return
        names = {f"class{i}": n for i, n in enumerate(self.class_names)}
        delimiter = self.deli
        for entry in sorted(os.listdir(self.save_dir)):
            if not entry.endswith(("_raw.csv", "_summary.csv")):
                continue
            path = os.path.join(self.save_dir, entry)
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh, delimiter=delimiter))
            rows = [[names.get(cell, cell) for cell in row] for row in rows]
            with open(path, "w", newline="") as fh:
                csv.writer(fh, delimiter=delimiter).writerows(rows)
