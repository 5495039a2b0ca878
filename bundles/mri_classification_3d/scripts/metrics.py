"""Classification metrics: accuracy, balanced accuracy, one-vs-rest AUC, confusion matrix.

:func:`classification_metrics` computes them from class probabilities and true class
indices (AUC by MONAI's ``compute_roc_auc``); :class:`ClassificationMetric` is the ignite
metric a MONAI evaluator attaches (``key_val_metric`` / ``additional_metrics``), gathered
over all processes under DDP.

Example:
    >>> m = classification_metrics(np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]), np.array([0, 1, 1]))
    >>> m["accuracy"], m["balanced_accuracy"], m["auc"]
    (0.666..., 0.75, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.metrics import Metric
from monai.handlers.utils import from_engine
from monai.metrics import compute_roc_auc

__all__ = ["METRICS", "ClassificationMetric", "class_index", "classification_metrics", "confusion_matrix"]

METRICS = ("accuracy", "balanced_accuracy", "auc")


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return cm


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Metrics of ``probs`` (``[N, C]``) against class indices ``labels`` (``[N]``).

    ``balanced_accuracy`` is the mean recall over the classes present; ``auc`` is the mean
    one-vs-rest ROC AUC over the classes that are present and absent in ``labels`` (NaN if
    none is), with the per-class values in ``auc_per_class``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    n, c = probs.shape
    predicted = probs.argmax(axis=1)
    cm = confusion_matrix(labels, predicted, c)
    support = cm.sum(axis=1)
    recalls = [cm[k, k] / support[k] for k in range(c) if support[k] > 0]
    per_class_auc = []
    for k in range(c):
        positive = labels == k
        if 0 < positive.sum() < n:
            per_class_auc.append(float(compute_roc_auc(torch.as_tensor(probs[:, k]), torch.as_tensor(positive))))
        else:
            per_class_auc.append(float("nan"))
    valid = [a for a in per_class_auc if not np.isnan(a)]
    return {
        "n": int(n),
        "accuracy": float((predicted == labels).mean()) if n else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "auc": float(np.mean(valid)) if valid else float("nan"),
        "auc_per_class": per_class_auc,
        "confusion_matrix": cm,
        "predicted": predicted,
    }


def class_index(y: Any) -> int:
    """A class index from an index (scalar) or a one-hot / score vector."""
    y = torch.as_tensor(y)
    return int(y.argmax()) if y.numel() > 1 else int(y.reshape(()))


class ClassificationMetric(Metric):
    """One of :data:`METRICS` as an ignite metric over an evaluator's epoch.

    Args:
        metric: ``"accuracy"``, ``"balanced_accuracy"`` or ``"auc"``.
        output_transform: engine output to ``(probs, labels)`` lists (default: MONAI's
            ``from_engine(["pred", "label"])`` on a decollated output); ``pred`` holds class
            probabilities (apply softmax in postprocessing), ``label`` an index or one-hot vector.
    """

    def __init__(self, metric: str = "balanced_accuracy", output_transform: Callable | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
        self.metric = metric
        self._probs: list[torch.Tensor] = []
        self._labels: list[int] = []
        super().__init__(output_transform=output_transform or from_engine(["pred", "label"]))

    def reset(self) -> None:
        self._probs, self._labels = [], []

    def update(self, output: Sequence[Any]) -> None:
        probs, labels = output
        for p, y in zip(probs, labels):
            self._probs.append(torch.as_tensor(p).detach().float().reshape(-1).cpu())
            self._labels.append(class_index(y))

    def compute(self) -> float:
        probs = torch.stack(self._probs) if self._probs else torch.zeros((0, 1))
        labels = torch.as_tensor(self._labels, dtype=torch.long)
        if idist.get_world_size() > 1:  # every rank saw a share of the validation subjects
            probs, labels = idist.all_gather(probs), idist.all_gather(labels)
        if len(labels) == 0:
            return float("nan")
        return classification_metrics(probs.numpy(), labels.numpy())[self.metric]
