"""Tiny MONAI trainer/evaluator pairs on random tensors for the training-handler tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer


def tiny_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))


def batches(n: int = 3, shift: float = 0.0, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randn(4, 1, 8, 8, generator=gen) + shift,
            "label": torch.randint(0, 2, (4, 1, 8, 8), generator=gen).float(),
        }
        for _ in range(n)
    ]


class ScriptedEvaluator(Engine):
    """An evaluator whose key metric follows a script, one value per run (= per validation)."""

    def __init__(self, values: Sequence[float], name: str = "val_mean_dice") -> None:
        super().__init__(lambda engine, batch: None)
        self.values = list(values)
        self.runs = 0
        self.name = name

        @self.on(Events.EPOCH_COMPLETED)
        def _set_metric(engine: Engine) -> None:
            engine.state.metrics[name] = self.values[min(self.runs, len(self.values) - 1)]
            self.runs += 1

    def run(self, global_epoch: int = 1) -> None:  # ValidationHandler passes the trainer's epoch
        super().run([0], max_epochs=1)


@dataclass
class Run:
    trainer: SupervisedTrainer
    evaluator: ScriptedEvaluator
    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def make_run(values: Sequence[float] = (0.5,), max_epochs: int = 2, seed: int = 0) -> Run:
    torch.manual_seed(seed)
    network = tiny_net()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=batches(),
        network=network,
        optimizer=optimizer,
        loss_function=_loss,
        decollate=False,
    )
    evaluator = ScriptedEvaluator(values)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: evaluator.run(engine.state.epoch))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())
    return Run(trainer, evaluator, network, optimizer, scheduler)


def _loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(pred, label[:, 0].long())


@pytest.fixture
def run_factory():
    """``make_run(values, max_epochs, seed)``: a MONAI trainer validated by a scripted evaluator."""
    return make_run


@pytest.fixture
def net_factory():
    """``tiny_net()``: conv, BatchNorm, conv."""
    return tiny_net


@pytest.fixture
def batch_factory():
    """``batches(n, shift, seed)``: image/label batches of 4 x 1 x 8 x 8."""
    return batches
