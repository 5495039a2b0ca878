"""Parameter and gradient histograms for TensorBoard (MONAI's TensorBoard handlers write scalars and images only).

Example:
    >>> writer = SummaryWriter("runs")
    >>> TensorBoardHistogramHandler(network, summary_writer=writer).attach(trainer)
"""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers.tensorboard_handlers import TensorBoardHandler

__all__ = ["TensorBoardHistogramHandler"]


class TensorBoardHistogramHandler(TensorBoardHandler):
    """Every ``interval`` epochs, a histogram of each parameter (``params/<name>``) and gradient (``grads/<name>``).

    Gradients are those of the epoch's last iteration, divided by AMP's loss scale when a
    ``GradScaler`` is active.

    Args:
        network: the model (a DDP wrapper is unwrapped so names stay stable).
        summary_writer: a shared ``SummaryWriter`` (default: a new one in ``log_dir``).
        log_dir: folder for a new writer.
        interval: epochs between histograms.
        gradients: also write gradient histograms.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        summary_writer: Any = None,
        log_dir: str = "./runs",
        interval: int = 1,
        gradients: bool = True,
    ) -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        if interval < 1:
            raise ValueError(f"interval must be >= 1 epoch, got {interval}")
        self.network = network.module if hasattr(network, "module") else network
        self.interval = interval
        self.gradients = gradients

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        step = engine.state.epoch
        scaler = getattr(engine, "scaler", None)
        scale = float(scaler.get_scale()) if scaler is not None and getattr(engine, "amp", False) else 1.0
        for name, param in self.network.named_parameters():
            self._writer.add_histogram(f"params/{name}", param.detach().float().cpu(), step)
            if self.gradients and param.grad is not None:
                grad = param.grad.detach().float().cpu() / scale
                if torch.isfinite(grad).all():
                    self._writer.add_histogram(f"grads/{name}", grad, step)
        self._writer.flush()
