"""Ignite handlers: a sample grid per validation epoch, and training throughput per epoch.

Example (in a bundle's handler lists)::

    {"_target_": "scripts.handlers.SampleGridSaver", "output_dir": "@output_dir",
     "summary_writer": "@summary_writer", "keys": ["image", "pred", "label"]}
    {"_target_": "scripts.handlers.ThroughputLogger", "summary_writer": "@summary_writer"}
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from .io import to_uint8, write_png

__all__ = ["SampleGridSaver", "ThroughputLogger", "sample_grid"]

logger = logging.getLogger(__name__)


def sample_grid(columns: Sequence[torch.Tensor], reference: int | None = None, separator: int = 2) -> np.ndarray:
    """A uint8 ``[rows * H, cols * W]`` grid: one row per sample, one column per tensor ``[N, 1, H, W]``.

    Each row is windowed to the range of column ``reference`` (e.g. the true target, so that
    the generated image is shown on the same scale); columns before it (the condition) use
    their own range. ``None`` windows every panel on its own.
    """
    n = min(int(c.shape[0]) for c in columns)
    rows = []
    for i in range(n):
        panels = []
        window = None
        if reference is not None:
            ref = columns[reference][i].float()
            window = (float(ref.min()), float(ref.max()))
        for j, col in enumerate(columns):
            use = window if reference is not None and j >= reference else None
            panels.append(to_uint8(col[i, 0], use))
            panels.append(np.full((panels[-1].shape[0], separator), 255, dtype=np.uint8))
        row = np.concatenate(panels[:-1], axis=1)
        rows.extend([row, np.full((separator, row.shape[1]), 255, dtype=np.uint8)])
    return np.concatenate(rows[:-1], axis=0)


class SampleGridSaver:
    """Collect up to ``max_images`` samples of an evaluator's epoch; save them as a PNG grid and to TensorBoard.

    Args:
        output_dir: folder for ``<prefix>_epoch_<NNNN>.png`` (created).
        summary_writer: a ``SummaryWriter``; ``None`` writes PNG files only.
        keys: output keys shown as columns, e.g. ``["image", "pred", "label"]`` (condition,
            generated, true target) or ``["image", "pred"]`` (input, reconstruction).
        reference_key: the column whose range windows the columns from it on
            (default: ``label`` if among ``keys``, else the first key).
        max_images: rows of the grid.
        prefix: file-name prefix and TensorBoard tag.

    The epoch number is the evaluator's ``state.epoch``, which MONAI's ``ValidationHandler``
    sets to the trainer's epoch.
    """

    def __init__(
        self,
        output_dir: str,
        summary_writer: Any = None,
        keys: Sequence[str] = ("image", "pred", "label"),
        reference_key: str | None = None,
        max_images: int = 8,
        prefix: str = "samples",
    ) -> None:
        self.output_dir = output_dir
        self.summary_writer = summary_writer
        self.keys = list(keys)
        ref = reference_key or ("label" if "label" in self.keys else self.keys[0])
        self.reference = self.keys.index(ref) if ref in self.keys else None
        self.max_images = max_images
        self.prefix = prefix
        self._collected: dict[str, list[torch.Tensor]] = {}
        self.last_path: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._collected = {k: [] for k in self.keys}

    def _count(self) -> int:
        first = self._collected.get(self.keys[0], [])
        return sum(int(t.shape[0]) for t in first)

    def _collect(self, engine: Engine) -> None:
        if self._count() >= self.max_images:
            return
        output = engine.state.output
        if isinstance(output, list):  # decollated items
            output = {k: torch.stack([torch.as_tensor(o[k]) for o in output]) for k in self.keys if k in output[0]}
        if not isinstance(output, dict) or any(k not in output for k in self.keys):
            return
        for k in self.keys:
            self._collected[k].append(torch.as_tensor(output[k]).detach().float().cpu())

    def _write(self, engine: Engine) -> None:
        if not self._collected or not self._collected[self.keys[0]]:
            return
        columns = [torch.cat(self._collected[k])[: self.max_images] for k in self.keys]
        grid = sample_grid(columns, reference=self.reference)
        os.makedirs(self.output_dir, exist_ok=True)
        epoch = int(engine.state.epoch)
        self.last_path = write_png(os.path.join(self.output_dir, f"{self.prefix}_epoch_{epoch:04d}.png"), grid)
        if self.summary_writer is not None:
            self.summary_writer.add_image(self.prefix, grid[None], global_step=epoch, dataformats="CHW")
            self.summary_writer.flush()


class ThroughputLogger:
    """Log training steps/s and images/s of every epoch (and write them to TensorBoard).

    The clock runs from the epoch's start to its last iteration, data loading included and
    epoch-end work (validation, checkpoints) excluded. Results are kept in :attr:`history`.

    Args:
        summary_writer: a ``SummaryWriter`` for ``<tag>/steps_per_second`` and
            ``<tag>/images_per_second``; ``None`` logs only.
        tag: name prefix.
    """

    def __init__(self, summary_writer: Any = None, tag: str = "throughput") -> None:
        self.summary_writer = summary_writer
        self.tag = tag
        self.history: list[dict[str, float]] = []
        self._start = 0.0
        self._end = 0.0
        self._steps = 0
        self._images = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._start = self._end = time.perf_counter()
        self._steps = self._images = 0

    def _iteration(self, engine: Engine) -> None:
        self._end = time.perf_counter()
        self._steps += 1
        batch = engine.state.batch
        first = (
            batch
            if isinstance(batch, torch.Tensor)
            else next(iter(batch.values() if isinstance(batch, dict) else batch))
        )
        self._images += int(first.shape[0]) if isinstance(first, torch.Tensor) else 1

    def _completed(self, engine: Engine) -> None:
        seconds = max(self._end - self._start, 1e-9)
        record = {
            "epoch": float(engine.state.epoch),
            "steps": float(self._steps),
            "seconds": seconds,
            "steps_per_second": self._steps / seconds,
            "images_per_second": self._images / seconds,
        }
        self.history.append(record)
        logger.info(
            "epoch %d: %d steps in %.2f s, %.3f steps/s, %.2f images/s",
            engine.state.epoch,
            self._steps,
            seconds,
            record["steps_per_second"],
            record["images_per_second"],
        )
        if self.summary_writer is not None:
            for key in ("steps_per_second", "images_per_second"):
                self.summary_writer.add_scalar(f"{self.tag}/{key}", record[key], engine.state.epoch)
