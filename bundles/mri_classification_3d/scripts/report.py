"""Per-subject results of an evaluator: metric files and PNGs (evaluate), probabilities (inference).

Both handlers collect, per subject, the class probabilities the evaluator's postprocessing
left in ``pred`` (softmax), the true class if the batch has one, and the subject id:

* :class:`ClassificationReport` writes ``metrics.csv`` (accuracy, balanced accuracy,
  one-vs-rest AUC, the majority-class baseline), ``confusion_matrix.csv`` / ``.png`` and
  ``predictions.csv``.
* :class:`PredictionWriter` writes ``predictions.csv`` and, if asked, the same values into
  the store's subject table as new columns (``pred_<label_column>``,
  ``prob_<label_column>_<class>``), changing nothing else there.

Example (in a bundle config):
    ``{"_target_": "scripts.report.ClassificationReport", "output_dir": "@output_dir",
    "class_map": "@data.class_map"}`` among ``validate#handlers``.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from ignite.engine import Engine, Events

from scripts.data import ClassMap
from scripts.metrics import class_index, classification_metrics

__all__ = ["ClassificationReport", "PredictionWriter", "SubjectCollector", "plot_confusion_matrix"]

logger = logging.getLogger(__name__)


def _items(value: Any) -> list[Any]:
    """Per-item entries of a decollated (list) or collated (dict of batches) engine attribute."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _write_csv_atomic(df: pd.DataFrame, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".csv.tmp")
    os.close(fd)
    df.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    os.replace(tmp, path)


class SubjectCollector:
    """Collects ``subject_id``, class probabilities and (if present) the label of every item."""

    def __init__(self, class_map: ClassMap) -> None:
        self.class_map = class_map
        self.subjects: list[str] = []
        self.probs: list[np.ndarray] = []
        self.labels: list[int | None] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        self.subjects, self.probs, self.labels = [], [], []

    def collect(self, engine: Engine) -> None:
        outputs, batch = _items(engine.state.output), _items(engine.state.batch)
        for out, item in zip(outputs, batch):
            probs = torch.as_tensor(out["pred"]).detach().float().reshape(-1).cpu().numpy()
            if probs.shape[0] != len(self.class_map):
                raise ValueError(
                    f"the network gives {probs.shape[0]} class scores, the class map has {len(self.class_map)} "
                    f"classes {self.class_map.class_names}"
                )
            self.probs.append(probs)
            self.subjects.append(str(item.get("subject_id", "")))
            label = out.get("label", item.get("label"))
            self.labels.append(None if label is None else class_index(label))

    def frame(self) -> pd.DataFrame:
        """One row per subject: ``subject_id``, predicted class, ``prob_<class>``, ``true`` if known."""
        probs = np.stack(self.probs) if self.probs else np.zeros((0, len(self.class_map)))
        names = self.class_map.class_names
        df = pd.DataFrame({"subject_id": self.subjects, "predicted": [names[i] for i in probs.argmax(axis=1)]})
        if any(label is not None for label in self.labels):
            df.insert(1, "true", [names[i] if i is not None else "" for i in self.labels])
        for k, name in enumerate(names):
            df[f"prob_{name}"] = probs[:, k]
        return df

    def completed(self, engine: Engine) -> None:
        raise NotImplementedError


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str, title: str = "") -> str:
    """A confusion-matrix heat map with counts and row-normalised shares, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class ClassificationReport(SubjectCollector):
    """Writes the evaluation files into ``output_dir`` when the evaluator completes.

    Args:
        output_dir: folder for ``metrics.csv``, ``confusion_matrix.csv``/``.png`` and
            ``predictions.csv`` (created if missing).
        class_map: the model's classes.
    """

    def __init__(self, output_dir: str, class_map: ClassMap) -> None:
        super().__init__(class_map)
        self.output_dir = output_dir
        self.metrics: dict[str, Any] = {}

    def completed(self, engine: Engine) -> None:
        if any(label is None for label in self.labels):
            raise ValueError("evaluation needs the true class of every subject; use inference.json for unlabelled data")
        os.makedirs(self.output_dir, exist_ok=True)
        labels = np.asarray(self.labels, dtype=int)
        m = classification_metrics(np.stack(self.probs), labels)
        names = self.class_map.class_names
        counts = np.bincount(labels, minlength=len(names))
        rows = [
            ("subjects", m["n"]),
            ("accuracy", m["accuracy"]),
            ("balanced_accuracy", m["balanced_accuracy"]),
            ("auc_one_vs_rest", m["auc"]),
            *((f"auc_{name}_vs_rest", a) for name, a in zip(names, m["auc_per_class"])),
            ("majority_class", names[int(counts.argmax())]),
            ("majority_baseline_accuracy", float(counts.max() / counts.sum())),
            ("majority_baseline_balanced_accuracy", 1.0 / int((counts > 0).sum())),
        ]
        _write_csv_atomic(pd.DataFrame(rows, columns=["metric", "value"]), os.path.join(self.output_dir, "metrics.csv"))
        cm = pd.DataFrame(
            m["confusion_matrix"], index=[f"true_{n}" for n in names], columns=[f"pred_{n}" for n in names]
        )
        _write_csv_atomic(cm.reset_index(names="class"), os.path.join(self.output_dir, "confusion_matrix.csv"))
        title = f"balanced accuracy {m['balanced_accuracy']:.3f}, AUC {m['auc']:.3f} (n={m['n']})"
        plot_confusion_matrix(
            m["confusion_matrix"], names, os.path.join(self.output_dir, "confusion_matrix.png"), title
        )
        _write_csv_atomic(self.frame(), os.path.join(self.output_dir, "predictions.csv"))
        self.metrics = dict(rows)
        logger.info(f"evaluation of {m['n']} subjects: " + ", ".join(f"{k}={v}" for k, v in rows[1:4]))


class PredictionWriter(SubjectCollector):
    """Writes ``predictions.csv`` and, optionally, the predictions into the store's subject table.

    Args:
        output_dir: folder for ``predictions.csv``.
        class_map: the model's classes.
        label_column: names the new columns: ``pred_<label_column>`` (class name) and
            ``prob_<label_column>_<class>``.
        store_uri: write the columns into this store's subject table (``None``: do not).
    """

    def __init__(
        self, output_dir: str, class_map: ClassMap, label_column: str = "diagnosis", store_uri: str | None = None
    ) -> None:
        super().__init__(class_map)
        self.output_dir = output_dir
        self.label_column = label_column
        self.store_uri = store_uri or None

    def subject_columns(self) -> pd.DataFrame:
        """The values for the subject table, indexed by subject id."""
        df = self.frame().set_index("subject_id")
        out = pd.DataFrame({f"pred_{self.label_column}": df["predicted"]}, index=df.index)
        for name in self.class_map.class_names:
            out[f"prob_{self.label_column}_{name}"] = df[f"prob_{name}"].astype(float)
        return out

    def completed(self, engine: Engine) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        _write_csv_atomic(self.frame(), os.path.join(self.output_dir, "predictions.csv"))
        if self.store_uri:
            from radiobject_adapter.store.subject_table import write_subject_columns

            added = write_subject_columns(self.store_uri, self.subject_columns())
            logger.info(
                f"wrote predictions of {len(self.subjects)} subjects into {self.store_uri} (new columns {added})"
            )
