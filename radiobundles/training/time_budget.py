"""Training time: an estimate of what is left after every epoch, and a budget a run keeps.

:class:`RunClock` prints, after each epoch, how long it took and about how long the rest of the run
will take (the mean epoch so far, validation included, times the epochs left). With
``budget_s`` it also ends training at the end of the last epoch that fits the budget (ignite's
``terminate``: the engine still completes, so the best checkpoint is written as usual), and says so.

Example (``ct_segmentation_3d``'s ``train#handlers``; ``--time_budget_s 600`` sets the budget)::

    {"_target_": "radiobundles.training.RunClock", "budget_s": "@time_budget_s", "quiet": "$not @is_main_process"}

Under DDP each process decides alone: give a budget to single-process runs only.
"""

from __future__ import annotations

import time

from ignite.engine import Engine, Events
from tqdm.auto import tqdm

__all__ = ["RunClock", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` -> ``'1 min 15 s'``; ``3725`` -> ``'1 h 2 min'``.

    Example:
        >>> format_duration(42.4)
        '42 s'
    """
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


class RunClock:
    """Per-epoch time and the time left; optionally a time budget for the whole training run.

    Args:
        budget_s: seconds the training may take; ``None``: no budget, only the estimate.
        quiet: no printed lines (the budget still applies).
    """

    def __init__(self, budget_s: float | None = None, quiet: bool = False) -> None:
        if budget_s is not None and budget_s <= 0:
            raise ValueError(f"budget_s must be positive seconds, got {budget_s!r}")
        self.budget_s = budget_s
        self.quiet = quiet
        self.started: float | None = None
        self.epochs_done = 0
        self.stopped_early_at: int | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _start(self, engine: Engine) -> None:
        self.started = time.perf_counter()
        self.epochs_done = 0  # epochs of this run (a resumed run starts past epoch 0)

    def _epoch_completed(self, engine: Engine) -> None:
        assert self.started is not None
        self.epochs_done += 1
        elapsed = time.perf_counter() - self.started
        mean = elapsed / self.epochs_done
        epoch, total = engine.state.epoch, engine.state.max_epochs
        left_epochs = total - epoch
        if self.budget_s is not None and left_epochs > 0 and elapsed + mean > self.budget_s:
            self.stopped_early_at = epoch
            self._say(
                f"time budget {format_duration(self.budget_s)} reached: training stops after epoch {epoch} of "
                f"{total} ({format_duration(elapsed)}); the best checkpoint so far is kept"
            )
            engine.terminate()
            return
        if left_epochs > 0:
            self._say(
                f"epoch {epoch}/{total}: {format_duration(elapsed)} so far, "
                f"about {format_duration(mean * left_epochs)} left"
            )

    def _say(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line)
