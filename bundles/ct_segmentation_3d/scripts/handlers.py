"""Ignite handlers of the 3D segmentation bundle: a TensorBoard slice panel and a progress bar.

Example:
    >>> TensorBoardSlicePanel(summary_writer=writer).attach(evaluator)
    >>> ProgressBarHandler().attach(trainer)     # shows the running loss
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers.tensorboard_handlers import TensorBoardHandler

from radiobundles.ct3d.visualize import slice_panel

__all__ = ["ProgressBarHandler", "TensorBoardSlicePanel", "loss_value", "progress_values"]


def loss_value(output: Any) -> float | None:
    """The loss of a trainer output (a dict, or a decollated list of them); ``None`` if it has none.

    An ``output_transform`` for MONAI's stats handlers: a plain float is logged under their ``tag_name``.
    """
    first = output[0] if isinstance(output, (list, tuple)) and output else output
    if not isinstance(first, Mapping) or first.get("loss") is None:
        return None
    loss = first["loss"]
    return float(loss.detach()) if hasattr(loss, "detach") else float(loss)


def progress_values(output: Any) -> dict[str, float]:
    """What the progress bar shows next to each iteration: ``{"loss": ...}``."""
    loss = loss_value(output)
    return {} if loss is None else {"loss": loss}


class ProgressBarHandler:
    """Ignite's tqdm ``ProgressBar`` in the shape MONAI's configs attach (``handler.attach(engine)``).

    Args:
        output_transform: turns the engine output into the values shown next to the bar.
        persist: keep each epoch's finished bar on screen.
    """

    def __init__(self, output_transform: Callable[[Any], Any] = progress_values, persist: bool = True) -> None:
        self.output_transform = output_transform
        self.bar = ProgressBar(persist=persist)

    def attach(self, engine: Engine) -> None:
        self.bar.attach(engine, output_transform=self.output_transform)


class TensorBoardSlicePanel(TensorBoardHandler):
    """Once per validation run, one ``[image | ground truth | prediction]`` slice of one subject.

    Attach to an evaluator whose post-processing leaves ``image``, ``label`` and ``pred`` in its
    (decollated) output; the slice is the one with the most ground-truth foreground. The step is
    the evaluator's epoch, which MONAI's ``ValidationHandler`` sets to the trainer's epoch.

    Args:
        summary_writer: a shared ``SummaryWriter`` (default: a new one in ``log_dir``).
        log_dir: folder for a new writer.
        tag: TensorBoard image tag.
        index: which subject of the first validation batch to show.
        axis: slicing axis of the ``[X, Y, Z]`` volume.
    """

    def __init__(
        self,
        summary_writer: Any = None,
        log_dir: str = "./runs",
        tag: str = "val/image_label_pred",
        index: int = 0,
        axis: int = 2,
    ) -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.tag, self.index, self.axis = tag, index, axis
        self._written_this_run = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._written_this_run = False

    def __call__(self, engine: Engine) -> None:
        if self._written_this_run:
            return
        output = engine.state.output
        items = output if isinstance(output, (list, tuple)) else [output]
        if len(items) <= self.index or not isinstance(items[self.index], Mapping):
            return
        item = items[self.index]
        if not all(k in item for k in ("image", "label", "pred")):
            return
        panel = slice_panel(item["image"], item["label"], item["pred"], axis=self.axis)
        self._writer.add_image(self.tag, panel, engine.state.epoch, dataformats="HWC")
        self._writer.flush()
        self._written_this_run = True
