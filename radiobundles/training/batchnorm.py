"""BatchNorm re-calibration before validation.

Running statistics collected with momentum during training lag behind the weights (and
under AMP they are collected in half precision). Before each validation this handler resets
them and recomputes them exactly: forward-only passes over training batches, in FP32, with
the BatchNorm layers in training mode and ``momentum=None`` (a cumulative average over the
passes), everything else in eval mode (no dropout noise). The network is then left in eval
mode, so validation normalises with the re-calibrated statistics.

Example:
    >>> BatchNormRecalibration(network, train_loader, num_batches=20).attach(evaluator)
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import default_prepare_batch
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BatchNormRecalibration", "batchnorm_layers", "recalibrate_batchnorm"]

logger = logging.getLogger(__name__)


def batchnorm_layers(network: torch.nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers (1d/2d/3d, SyncBatchNorm) that track running statistics."""
    return [m for m in network.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def recalibrate_batchnorm(network: torch.nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Recompute the running statistics of every BatchNorm layer from ``inputs``.

    Args:
        network: the model; left in eval mode afterwards.
        inputs: network inputs (already on the network's device).

    Returns:
        The number of batches used (0 if the network has no BatchNorm layer).

    Example:
        >>> recalibrate_batchnorm(net, (batch["image"] for batch in train_loader))
    """
    layers = batchnorm_layers(network)
    if not layers:
        network.eval()
        return 0
    momenta = [layer.momentum for layer in layers]
    n_batches = 0
    try:
        network.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average: every batch weighs the same
            layer.train()
        device_type = next(network.parameters()).device.type
        with torch.no_grad(), torch.autocast(device_type=device_type, enabled=False):
            for x in inputs:
                network(x.float())
                n_batches += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        network.eval()
    if n_batches == 0:
        raise ValueError("BatchNorm re-calibration got no batches; the training data loader is empty")
    _average_across_ranks(layers, n_batches)
    return n_batches


def _average_across_ranks(layers: list[_BatchNorm], n_batches: int) -> None:
    """In a distributed run, give every rank the statistics of all ranks' batches.

    Each rank calibrated on its own shard; without this, ranks would validate with different
    statistics and only rank 0's would be saved. The running mean and variance become the
    batch-weighted averages over ranks (with ``SyncBatchNorm`` they are equal already, and stay so).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() < 2:
        return
    # one collective for all layers: batch-weighted sums of every mean and variance, and the batches
    buffers = [b for layer in layers for b in (layer.running_mean, layer.running_var)]
    weight = torch.tensor([float(n_batches)], device=buffers[0].device)
    stats = torch.cat([b * n_batches for b in buffers] + [weight])
    torch.distributed.all_reduce(stats)
    for buffer, total in zip(buffers, torch.split(stats[:-1] / stats[-1], [b.numel() for b in buffers])):
        buffer.copy_(total)


class BatchNormRecalibration:
    """Ignite handler: re-calibrate BatchNorm statistics on training batches before validation.

    Args:
        network: the model shared by trainer and evaluator.
        data_loader: training batches (the trainer's loader).
        num_batches: batches to use per calibration (``None``: the whole loader).
        prepare_batch: turns a loader batch into ``(inputs, targets)`` like the trainer does
            (MONAI's ``PrepareBatch`` signature); only the inputs are used.
        device: where to put the inputs (default: the network's device).
        event: when to run on the attached engine (default: when an evaluator run starts).

    Example:
        >>> BatchNormRecalibration(network, train_loader, num_batches=20,
        ...                        prepare_batch=SlicePrepareBatch()).attach(evaluator)
    """

    def __init__(
        self,
        network: torch.nn.Module,
        data_loader: Iterable[Any],
        num_batches: int | None = 20,
        prepare_batch: Callable[..., Any] = default_prepare_batch,
        device: str | torch.device | None = None,
        event: Events = Events.STARTED,
    ) -> None:
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches must be >= 1 or None (the whole loader), got {num_batches}")
        self.network = network
        self.data_loader = data_loader
        self.num_batches = num_batches
        self.prepare_batch = prepare_batch
        self.device = device
        self.event = event
        self.calls = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(self.event, self)

    def _inputs(self) -> Iterable[torch.Tensor]:
        device = self.device or next(self.network.parameters()).device
        batches = self.data_loader if self.num_batches is None else itertools.islice(self.data_loader, self.num_batches)
        for batch in batches:
            yield self.prepare_batch(batch, device, False)[0]

    def __call__(self, engine: Engine | None = None) -> None:
        used = recalibrate_batchnorm(self.network, self._inputs())
        self.calls += 1
        if used:
            logger.info(f"BatchNorm statistics re-calibrated on {used} training batches")
