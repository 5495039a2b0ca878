"""Training checkpoints that survive crashes: ``best.pt``, ``last.pt``, ``periodic_####.pt``.

Every file is written atomically by ignite's ``DiskSaver(atomic=True)`` (a temporary file in
the same folder, then ``os.replace``), so a crash while saving leaves the previous file intact
and never a partial one. What the stock handlers lack, and this module adds:

* MONAI's ``CheckpointSaver`` builds its ``DiskSaver`` with ``atomic=False``, and ignite's
  ``Checkpoint`` deletes a file of the same name *before* writing its successor, so a fixed
  name (``best.pt``, ``last.pt``) would be missing after a crash at the wrong moment.
* Periodic retention is decided from the files on disk, so it still holds after a resume.
* The scaler is read from the trainer when saving (MONAI's trainers create it in ``run()``).
* Resume from ``last.pt`` restores model, optimizer, scheduler, scaler, epoch and step, the
  best metric so far and any extra state (early stopping); at the end of training the best
  weights are put back into the network and written as the bundle's ``model.pt``.

Example:
    >>> manager = CheckpointManager("models", network, optimizer, lr_scheduler,
    ...                             evaluator=evaluator, key_metric_name="val_mean_dice",
    ...                             save_interval=5, n_saved=3)
    >>> manager.attach(trainer)            # or list it among a bundle's train handlers
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver

__all__ = ["BEST", "LAST", "PERIODIC_PATTERN", "CheckpointManager", "periodic_checkpoints", "save_atomic"]

BEST = "best.pt"
LAST = "last.pt"
PERIODIC_PATTERN = re.compile(r"^periodic_(\d+)\.pt$")

logger = logging.getLogger(__name__)


def save_atomic(obj: Mapping[str, Any], path: str | os.PathLike) -> str:
    """``torch.save`` ``obj`` to ``path`` through a temporary file and a rename.

    Only the main process (rank 0) writes when ``torch.distributed`` is initialised.

    Example:
        >>> save_atomic({"model": net.state_dict()}, "models/model.pt")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    DiskSaver(folder, atomic=True, create_dir=True, require_empty=False)(obj, os.path.basename(path))
    return path


def periodic_checkpoints(save_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """``(epoch, path)`` of the periodic checkpoints in ``save_dir``, oldest first."""
    if not os.path.isdir(save_dir):
        return []
    found = []
    for name in os.listdir(save_dir):
        match = PERIODIC_PATTERN.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(save_dir, name)))
    return sorted(found)


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DataParallel`` / ``DistributedDataParallel`` wrappers."""
    return network.module if hasattr(network, "module") else network


def _as_bool(value: bool | str, name: str) -> bool:
    """Booleans from configs and command lines (``python -m monai.bundle run --resume true`` passes a string)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{name} must be true or false, not {value!r}")
        return text in ("true", "1", "yes")
    return bool(value)


def _is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


class CheckpointManager:
    """Writes best / last / periodic checkpoints, resumes from ``last.pt``, restores the best weights.

    Each checkpoint holds ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``,
    ``metric`` (the latest validation value of ``key_metric_name``), ``best_metric``,
    ``best_epoch`` and ``extra`` (the ``state_dict()`` of each object in ``extra_states``).

    Args:
        save_dir: folder for the checkpoint files (created if missing).
        network: the model (a DDP / DataParallel wrapper is unwrapped).
        optimizer: its optimizer.
        lr_scheduler: learning-rate scheduler (optional).
        evaluator: the validation engine; ``best.pt`` is written when its ``key_metric_name``
            improves. Without it no ``best.pt`` is written.
        key_metric_name: metric that selects ``best.pt`` (e.g. ``"val_mean_dice"``).
        key_metric_mode: ``"max"`` (Dice) or ``"min"`` (a loss).
        save_interval: write ``periodic_####.pt`` every this many epochs (0: never).
        n_saved: keep the newest ``n_saved`` periodic files (``None``: keep all).
        extra_states: more objects with ``state_dict``/``load_state_dict`` to save and resume,
            e.g. ``{"early_stopping": handler}``.
        resume: load ``resume_from`` (default ``<save_dir>/last.pt``) when the trainer starts.
        resume_from: checkpoint to resume from.
        restore_best_at_end: when training completes (or is stopped early) load the weights of
            ``best.pt`` back into ``network``.
        final_model_name: after that, write the network's ``state_dict`` under this name in
            ``save_dir`` (``None``: do not).
        map_location: ``torch.load`` location for resume and restore.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: Any = None,
        evaluator: Engine | None = None,
        key_metric_name: str | None = None,
        key_metric_mode: str = "max",
        save_interval: int = 0,
        n_saved: int | None = 3,
        extra_states: Mapping[str, Any] | None = None,
        resume: bool | str = False,
        resume_from: str | os.PathLike | None = None,
        restore_best_at_end: bool = True,
        final_model_name: str | None = "model.pt",
        map_location: Any = "cpu",
    ) -> None:
        if key_metric_mode not in ("max", "min"):
            raise ValueError(f"key_metric_mode must be 'max' or 'min', not {key_metric_mode!r}")
        if n_saved is not None and n_saved < 1:
            raise ValueError(f"n_saved must be a positive number of files or None, got {n_saved}")
        if save_interval < 0:
            raise ValueError(f"save_interval must be >= 0 epochs, got {save_interval}")
        self.save_dir = os.fspath(save_dir)
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.evaluator = evaluator
        self.key_metric_name = key_metric_name
        self.key_metric_mode = key_metric_mode
        self.save_interval = int(save_interval)
        self.n_saved = n_saved
        self.extra_states = dict(extra_states or {})
        self.resume = _as_bool(resume, "resume")
        self.resume_from = os.fspath(resume_from) if resume_from is not None else os.path.join(self.save_dir, LAST)
        self.restore_best_at_end = restore_best_at_end
        self.final_model_name = final_model_name
        self.map_location = map_location
        self.trainer: Engine | None = None
        self.metric: float | None = None
        self.best_metric: float | None = None
        self.best_epoch: int | None = None

    # -- paths --------------------------------------------------------------------------
    @property
    def best_path(self) -> str:
        return os.path.join(self.save_dir, BEST)

    @property
    def last_path(self) -> str:
        return os.path.join(self.save_dir, LAST)

    def periodic_path(self, epoch: int) -> str:
        return os.path.join(self.save_dir, f"periodic_{epoch:04d}.pt")

    # -- ignite ---------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Attach to the trainer (and, through ``evaluator``, to validation)."""
        self.trainer = engine
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.resume_training)
        if self.evaluator is not None and self.key_metric_name is not None:
            self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self.validation_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.training_completed)

    def validation_completed(self, evaluator: Engine) -> None:
        """Record the key metric; write ``best.pt`` when it improved."""
        value = evaluator.state.metrics.get(self.key_metric_name)
        if value is None:
            raise KeyError(
                f"validation produced no metric {self.key_metric_name!r} (metrics: {sorted(evaluator.state.metrics)}); "
                "set key_metric_name to one of them"
            )
        self.metric = float(value)
        if self._improves(self.metric):
            self.best_metric = self.metric
            self.best_epoch = self._trainer_state("epoch")
            self._save(self.best_path)
            if _is_main_process():
                logger.info(
                    f"new best {self.key_metric_name}={self.metric:.4f} at epoch {self.best_epoch}: {self.best_path}"
                )

    def epoch_completed(self, engine: Engine) -> None:
        """Write ``last.pt`` and, every ``save_interval`` epochs, a periodic checkpoint."""
        self._save(self.last_path)
        epoch = engine.state.epoch
        if self.save_interval and epoch % self.save_interval == 0:
            self._save(self.periodic_path(epoch))
            self._prune_periodic()

    def training_completed(self, engine: Engine) -> None:
        """Restore the best weights (if any) and write the final model file."""
        # only a best.pt of this run (or of the run it resumed): a file left by an earlier run in
        # the same folder, when this one never validated, is not this run's best
        if self.restore_best_at_end and self.best_metric is not None and os.path.isfile(self.best_path):
            best = torch.load(self.best_path, map_location=self.map_location, weights_only=True)
            _unwrap(self.network).load_state_dict(best["model"])
            logger.info(
                f"restored the best weights (epoch {best['epoch']}, {best['metric_name']}={best['metric']:.4f})"
            )
        if self.final_model_name:
            save_atomic(_unwrap(self.network).state_dict(), os.path.join(self.save_dir, self.final_model_name))

    def resume_training(self, engine: Engine) -> None:
        """Load ``resume_from`` into the network, optimizer, scheduler, scaler, trainer and extras."""
        if not os.path.isfile(self.resume_from):
            raise FileNotFoundError(
                f"cannot resume: no checkpoint at {self.resume_from!r}; train once without resume to create it"
            )
        ckpt = torch.load(self.resume_from, map_location=self.map_location, weights_only=True)
        max_epochs = engine.state.max_epochs
        if max_epochs is not None and ckpt["epoch"] > max_epochs:
            raise ValueError(
                f"checkpoint {self.resume_from!r} is at epoch {ckpt['epoch']}, beyond max_epochs={max_epochs}; "
                "raise max_epochs to train on from it"
            )
        _unwrap(self.network).load_state_dict(ckpt["model"])
        if self.optimizer is not None and ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.lr_scheduler is not None and ckpt.get("scheduler") is not None:
            self.lr_scheduler.load_state_dict(ckpt["scheduler"])
            self._check_schedule_length(engine, ckpt)
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and ckpt.get("scaler"):  # a CPU run saves no scaler state
            scaler.load_state_dict(ckpt["scaler"])
        for name, obj in self.extra_states.items():
            state = ckpt.get("extra", {}).get(name)
            if state is not None:
                obj.load_state_dict(state)
        engine.state.epoch = int(ckpt["epoch"])
        engine.state.iteration = int(ckpt["step"])
        self.metric = ckpt.get("metric")
        self.best_metric = ckpt.get("best_metric")
        self.best_epoch = ckpt.get("best_epoch")
        logger.info(f"resumed from {self.resume_from} at epoch {ckpt['epoch']}, step {ckpt['step']}")

    # -- internals ------------------------------------------------------------------------
    def _check_schedule_length(self, engine: Engine, ckpt: Mapping[str, Any]) -> None:
        """A schedule of fixed length (OneCycleLR) cannot run past the steps it was built for."""
        planned = getattr(self.lr_scheduler, "total_steps", None)
        if planned is None or engine.state.max_epochs is None or engine.state.epoch_length is None:
            return
        needed = engine.state.max_epochs * engine.state.epoch_length
        if needed > planned:
            raise ValueError(
                f"the checkpoint's learning-rate schedule covers {planned} steps "
                f"({ckpt.get('max_epochs')} epochs), this run needs {needed} (max_epochs={engine.state.max_epochs}); "
                f"resume with max_epochs={ckpt.get('max_epochs')}, or start a new run from the saved weights"
            )

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if self.key_metric_mode == "max" else value < self.best_metric

    def _trainer_state(self, name: str) -> int:
        if self.trainer is None:
            return 0
        return int(getattr(self.trainer.state, name, 0) or 0)

    def payload(self) -> dict[str, Any]:
        """The dictionary written to every checkpoint file."""
        scaler = getattr(self.trainer, "scaler", None)
        return {
            "model": _unwrap(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": self._trainer_state("epoch"),
            "step": self._trainer_state("iteration"),
            "max_epochs": getattr(self.trainer.state, "max_epochs", None) if self.trainer is not None else None,
            "metric": self.metric,
            "metric_name": self.key_metric_name,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "extra": {name: obj.state_dict() for name, obj in self.extra_states.items()},
        }

    def _save(self, path: str) -> None:
        save_atomic(self.payload(), path)

    def _prune_periodic(self) -> None:
        if self.n_saved is None or not _is_main_process():
            return
        for _, path in periodic_checkpoints(self.save_dir)[: -self.n_saved]:
            os.remove(path)
