"""Early stopping on a validation metric that survives a resume.

MONAI's ``EarlyStopHandler`` (ignite's ``EarlyStopping`` inside) does the stopping; this adds
what a resumable run needs: ``state_dict`` / ``load_state_dict`` (patience counter and best
score, so a resumed run keeps counting where it stopped) and a score function built from a
metric name. The best weights are restored at the end by
:class:`radiobundles.training.checkpoint.CheckpointManager`.

Example:
    >>> stopper = ResumableEarlyStopHandler(patience=10, metric_name="val_mean_dice")
    >>> stopper.attach(evaluator)
    >>> stopper.set_trainer(trainer)       # in a bundle: "$@validate#early_stop.set_trainer(@train#trainer)"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ignite.engine import Engine
from monai.handlers import EarlyStopHandler

__all__ = ["ResumableEarlyStopHandler", "metric_score"]


def metric_score(metric_name: str, mode: str = "max") -> Callable[[Engine], float]:
    """A score function reading ``engine.state.metrics[metric_name]`` (negated for ``mode="min"``).

    Example:
        >>> score = metric_score("val_mean_dice")
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    sign = 1.0 if mode == "max" else -1.0

    def score(engine: Engine) -> float:
        try:
            return sign * float(engine.state.metrics[metric_name])
        except KeyError:
            raise KeyError(
                f"early stopping watches {metric_name!r}, but the engine has only {sorted(engine.state.metrics)}"
            ) from None

    return score


class ResumableEarlyStopHandler(EarlyStopHandler):
    """MONAI's ``EarlyStopHandler`` plus state for checkpoints and a metric-name shortcut.

    Args:
        patience: validations without improvement before training stops.
        metric_name: metric of the attached engine to watch (used when ``score_function`` is None).
        mode: ``"max"`` (Dice) or ``"min"`` (a loss) for ``metric_name``.
        score_function: explicit score function (higher is better); overrides ``metric_name``.
        trainer: the engine to stop; may be set later with :meth:`set_trainer`.
        min_delta / cumulative_delta / epoch_level: as in MONAI's ``EarlyStopHandler``.
    """

    def __init__(
        self,
        patience: int,
        metric_name: str | None = None,
        mode: str = "max",
        score_function: Callable[[Engine], float] | None = None,
        trainer: Engine | None = None,
        min_delta: float = 0.0,
        cumulative_delta: bool = False,
        epoch_level: bool = True,
    ) -> None:
        if score_function is None:
            if metric_name is None:
                raise ValueError("give the metric to watch (metric_name) or a score_function")
            score_function = metric_score(metric_name, mode)
        self._pending_state: Mapping[str, Any] | None = None
        super().__init__(
            patience=patience,
            score_function=score_function,
            trainer=trainer,
            min_delta=min_delta,
            cumulative_delta=cumulative_delta,
            epoch_level=epoch_level,
        )

    def set_trainer(self, trainer: Engine) -> None:
        super().set_trainer(trainer)
        if self._pending_state is not None:
            self._handler.load_state_dict(self._pending_state)
            self._pending_state = None

    def state_dict(self) -> dict[str, Any]:
        """Patience counter and best score (empty before a trainer is set)."""
        if self._handler is None:
            return dict(self._pending_state or {})
        return dict(self._handler.state_dict())

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not state_dict:
            return
        if self._handler is None:
            self._pending_state = dict(state_dict)
        else:
            self._handler.load_state_dict(state_dict)

    @property
    def counter(self) -> int:
        """Validations since the last improvement."""
        return 0 if self._handler is None else int(self._handler.counter)
