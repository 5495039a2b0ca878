"""Per-iteration training scalars MONAI's stats handlers do not compute themselves.

:class:`IterationTelemetry` adds, for each training iteration, the learning rate, the global
gradient norm (unscaled when AMP's ``GradScaler`` is on), the iteration time and a batch Dice
and the time spent waiting for data to the trainer's output dictionary, and at the end of each epoch their means to
``engine.state.metrics``. MONAI's ``StatsHandler`` and ``TensorBoardStatsHandler`` then log
them: per iteration through ``output_transform=batch_scalars``, per epoch as metrics.

Tags: ``batch/loss``, ``batch/dice``, ``batch/lr``, ``batch/grad_norm``, ``batch/iteration_time``,
``batch/data_time`` (per iteration); ``epoch/train_loss``, ``epoch/train_dice``, ``epoch/lr``,
``epoch/grad_norm``, ``epoch/iteration_time``, ``epoch/data_time`` (per epoch).

Example:
    >>> IterationTelemetry(optimizer).attach(trainer)          # trainer built with decollate=False
    >>> TensorBoardStatsHandler(summary_writer=w, output_transform=batch_scalars).attach(trainer)
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.utils import is_scalar

__all__ = ["BATCH_PREFIX", "IterationTelemetry", "batch_scalars", "gradient_norm", "mean_dice_from_logits"]

BATCH_PREFIX = "batch/"
EPOCH_PREFIX = "epoch/"


def gradient_norm(parameters: Iterable[torch.nn.Parameter], scale: float = 1.0) -> float:
    """Global L2 norm of the gradients, divided by ``scale`` (AMP's loss scale)."""
    norms = [p.grad.detach().float().norm(2) for p in parameters if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms), 2)) / scale


def mean_dice_from_logits(pred: torch.Tensor, label: torch.Tensor) -> float:
    """Mean foreground Dice of ``argmax(pred)`` against ``label`` (``[N, C, ...]`` vs ``[N, 1, ...]``).

    Classes absent from both prediction and label are skipped; ``nan`` if no class is present.
    """
    n_classes = pred.shape[1]
    with torch.no_grad():
        y_pred = one_hot(pred.detach().argmax(dim=1, keepdim=True), n_classes)
        y = one_hot(label.detach().long(), n_classes)
        dice = compute_dice(y_pred, y, include_background=n_classes == 1, ignore_empty=True)
    values = dice[~torch.isnan(dice)]
    return float(values.mean()) if values.numel() else float("nan")


def _as_float(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def batch_scalars(output: Any) -> dict[str, float]:
    """``output_transform`` for MONAI stats handlers: the loss and the telemetry scalars.

    Works for a trainer output dictionary (``decollate=False``) or a decollated list of them.
    """
    if isinstance(output, (list, tuple)):
        output = output[0] if output else {}
    if not isinstance(output, Mapping):
        return {}
    scalars: dict[str, float] = {}
    loss = output.get("loss")
    if loss is not None and is_scalar(loss):
        scalars[f"{BATCH_PREFIX}loss"] = _as_float(loss)
    for key, value in output.items():
        if isinstance(key, str) and key.startswith(BATCH_PREFIX) and is_scalar(value):
            scalars[key] = _as_float(value)
    return scalars


class IterationTelemetry:
    """Adds lr, gradient norm, times and batch Dice to each iteration; epoch means to metrics.

    ``iteration_time`` is the time of the training step (forward, backward, optimiser step);
    ``data_time`` the time spent waiting for the batch from the data loader.

    Args:
        optimizer: whose first parameter group's learning rate is logged (``None``: no lr).
        grad_norm: compute the global gradient norm after each backward pass.
        batch_metric: ``f(pred, label) -> float`` for ``batch/dice`` (``None``: none).
        network: whose gradients are measured (default: ``engine.network``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None = None,
        grad_norm: bool = True,
        batch_metric: Callable[[torch.Tensor, torch.Tensor], float] | None = mean_dice_from_logits,
        network: torch.nn.Module | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.grad_norm = grad_norm
        self.batch_metric = batch_metric
        self.network = network
        self._t0 = 0.0
        self._fetch_started = 0.0
        self._data_time = float("nan")
        self._current: dict[str, float] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._fetch_start)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._fetch_end)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        if self.grad_norm:
            if not engine.has_registered_events(IterationEvents.BACKWARD_COMPLETED):
                raise ValueError("grad_norm needs a MONAI trainer (it fires IterationEvents.BACKWARD_COMPLETED)")
            engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self._backward_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._sums.clear()
        self._counts.clear()

    def _fetch_start(self, engine: Engine) -> None:
        self._fetch_started = time.perf_counter()

    def _fetch_end(self, engine: Engine) -> None:
        self._data_time = time.perf_counter() - self._fetch_started

    def _iteration_started(self, engine: Engine) -> None:
        self._current = {"data_time": self._data_time}
        if self.optimizer is not None:
            # read before the scheduler steps: the rate this iteration trains with
            self._current["lr"] = float(self.optimizer.param_groups[0]["lr"])
        self._t0 = time.perf_counter()

    def _backward_completed(self, engine: Engine) -> None:
        network = self.network if self.network is not None else engine.network
        scaler = getattr(engine, "scaler", None)
        scale = float(scaler.get_scale()) if scaler is not None and getattr(engine, "amp", False) else 1.0
        self._current["grad_norm"] = gradient_norm(network.parameters(), scale)

    def _iteration_completed(self, engine: Engine) -> None:
        self._current["iteration_time"] = time.perf_counter() - self._t0
        output = engine.state.output
        first = output[0] if isinstance(output, (list, tuple)) and output else output
        if isinstance(first, Mapping):
            if first.get("loss") is not None:
                self._current["loss"] = _as_float(first["loss"])
            if self.batch_metric is not None and isinstance(output, Mapping) and "pred" in output:
                self._current["dice"] = self.batch_metric(output["pred"], output["label"])
        items = output if isinstance(output, (list, tuple)) else [output]
        for item in items:
            if isinstance(item, dict):
                item.update({f"{BATCH_PREFIX}{k}": v for k, v in self._current.items() if k != "loss"})
        for key, value in self._current.items():
            if not math.isnan(value):
                self._sums[key] += value
                self._counts[key] += 1

    def _epoch_completed(self, engine: Engine) -> None:
        names = {"loss": "train_loss", "dice": "train_dice"}
        for key, total in self._sums.items():
            engine.state.metrics[f"{EPOCH_PREFIX}{names.get(key, key)}"] = total / self._counts[key]
