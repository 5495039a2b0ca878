"""Training progress as 3D Slicer reads it: ``/info/`` ``train_stats`` from the running training.

3D Slicer's MONAI Label module polls ``GET /train/`` and, while the status is ``RUNNING``,
reads ``/info/`` ``train_stats[<model>]``: ``epoch`` of ``total_epochs`` for the progress bar
(``0`` once ``total_time`` is set), ``best_metric`` for the accuracy bar, ``start_ts``. MONAI
Label's own trainers write these fields to ``<model dir>/train_stats.json``; its bundle trainer
writes nothing (and MONAI 1.6's ``Workflow.get_stats()`` no longer lists the epochs MONAI
Label's ``prepare_stats`` relied on). :class:`TrainStatsWriter` is a bundle train handler that
writes the same file at the start and after every epoch of a bundle run, atomically (the
server reads it while the training process writes it); :func:`read_train_stats` reads it
back, so the last run's figures stay visible after it ends.

Example (as the app adds it to ``train#handlers``)::

    {"_target_": "monailabel_app.lib.train_stats.TrainStatsWriter",
     "path": "<bundle>/models/train_stats.json", "evaluator": "@validate#evaluator"}
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import time
import uuid
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["STATS_FILE", "TrainStatsWriter", "read_train_stats", "record_failure", "train_stats"]

STATS_FILE = "train_stats.json"  # MONAI Label's name, in the bundle's models/ (its model dir)

logger = logging.getLogger(__name__)


def _number(value: Any) -> Any:
    """Plain JSON numbers for tensors and numpy scalars; ``None`` for NaN."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train_stats(trainer: Engine, evaluator: Engine | None, start_ts: float, finished: bool = False) -> dict[str, Any]:
    """The fields 3D Slicer and MONAI Label read, from the engines' states.

    ``best_metric`` is the validation key metric's best so far (0 before the first
    validation: Slicer draws it as a 0..1 accuracy bar), ``epoch`` the epochs completed.
    """
    state = trainer.state
    elapsed = str(datetime.timedelta(seconds=int(time.time() - start_ts)))
    stats: dict[str, Any] = {
        "epoch": int(state.epoch or 0),
        "total_epochs": int(state.max_epochs or 0),
        "iteration": int(state.iteration or 0),
        "start_ts": int(start_ts),
        "total_time" if finished else "current_time": elapsed,
        "best_metric": 0.0,
    }
    loss = state.output
    if isinstance(loss, (list, tuple)) and loss and isinstance(loss[0], dict):
        loss = loss[0]
    if isinstance(loss, dict) and "loss" in loss:
        stats["train_loss"] = _number(loss["loss"])
    if evaluator is not None:
        ev = evaluator.state
        best = _number(getattr(ev, "best_metric", -1))
        if best is not None and best >= 0:
            stats["best_metric"] = float(best)
        stats["eval"] = {
            "metrics": {k: _number(v) for k, v in (getattr(ev, "metrics", None) or {}).items()},
            "key_metric_name": getattr(ev, "key_metric_name", None),
            "best_metric": stats["best_metric"],
            "best_metric_epoch": int(getattr(ev, "best_metric_epoch", -1) or -1),
        }
    return stats


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    os.replace(tmp, path)  # readers never see half a file


def read_train_stats(path: str) -> dict[str, Any]:
    """The stats a training wrote at ``path`` (``{}`` when there are none yet)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_failure(path: str, message: str, start_ts: float, total_epochs: int | None = None) -> dict[str, Any]:
    """Mark the training that started at ``start_ts`` as failed in its stats file, with ``message``.

    Keeps what the run wrote (epochs done, best metric) when it got that far; a run that failed
    before its first epoch gets fresh stats rather than the previous run's. ``error`` holds the
    cause; ``total_time`` is set, as for any ended run. Returns what was written.
    """
    old = read_train_stats(path)
    stats: dict[str, Any] = old if int(old.get("start_ts", -1)) >= int(start_ts) else {}
    stats.setdefault("epoch", 0)
    stats.setdefault("total_epochs", int(total_epochs or 0))
    stats.setdefault("best_metric", 0.0)
    stats["start_ts"] = int(stats.get("start_ts", start_ts))
    stats.pop("current_time", None)
    stats["total_time"] = str(datetime.timedelta(seconds=int(time.time() - start_ts)))
    stats["error"] = message
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        _write_json(path, stats)
    except OSError as err:
        logger.warning(f"could not write training stats to {path}: {err}")
    return stats


class TrainStatsWriter:
    """Bundle train handler: writes :func:`train_stats` to ``path`` when training starts,
    after every epoch and when it completes.

    Args:
        path: the stats file (``<bundle>/models/train_stats.json``).
        evaluator: the validation engine whose key metric is ``best_metric`` (may be ``None``).
    """

    def __init__(self, path: str, evaluator: Engine | None = None) -> None:
        self.path = path
        self.evaluator = evaluator
        self.start_ts = time.time()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.start_ts = time.time()
        self._write(engine)

    def _completed(self, engine: Engine) -> None:
        self._write(engine, finished=True)

    def _write(self, engine: Engine, finished: bool = False) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            _write_json(self.path, train_stats(engine, self.evaluator, self.start_ts, finished))
        except OSError as err:  # progress reporting must never stop a training
            logger.warning(f"could not write training stats to {self.path}: {err}")
