from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.handlers import LrScheduleHandler

from radiobundles.training import IterationTelemetry, batch_scalars, gradient_norm, mean_dice_from_logits


def test_each_iteration_reports_loss_lr_gradient_norm_time_and_dice(run_factory):
    run = run_factory(max_epochs=1)
    IterationTelemetry(run.optimizer).attach(run.trainer)
    seen = []
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(batch_scalars(e.state.output)))
    run.trainer.run()
    assert len(seen) == 3
    assert set(seen[0]) == {
        "batch/loss",
        "batch/lr",
        "batch/grad_norm",
        "batch/iteration_time",
        "batch/data_time",
        "batch/dice",
    }
    last = seen[-1]
    assert last["batch/grad_norm"] == pytest.approx(gradient_norm(run.network.parameters()), rel=1e-5)
    assert last["batch/iteration_time"] > 0 and last["batch/data_time"] >= 0
    assert 0.0 <= last["batch/dice"] <= 1.0


def test_epoch_means_land_in_the_metrics(run_factory):
    run = run_factory(max_epochs=1)
    IterationTelemetry(run.optimizer).attach(run.trainer)
    losses = []
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    run.trainer.run()
    metrics = run.trainer.state.metrics
    assert metrics["epoch/train_loss"] == pytest.approx(sum(losses) / len(losses))
    assert {"epoch/lr", "epoch/grad_norm", "epoch/iteration_time", "epoch/data_time", "epoch/train_dice"} <= set(
        metrics
    )


def test_logged_lr_is_the_rate_the_iteration_trained_with(run_factory):
    run = run_factory(max_epochs=1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        run.optimizer, max_lr=0.1, total_steps=10, div_factor=10.0, pct_start=0.5
    )
    IterationTelemetry(run.optimizer).attach(run.trainer)
    LrScheduleHandler(scheduler, epoch_level=False, print_lr=False).attach(run.trainer)
    logged, used = [], []
    run.trainer.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED, lambda e: used.append(run.optimizer.param_groups[0]["lr"])
    )
    run.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: logged.append(e.state.output["batch/lr"]))
    run.trainer.run()
    assert logged == pytest.approx(used)
    assert logged[0] == pytest.approx(0.01)  # OneCycle starts at max_lr / div_factor
    assert logged[0] < logged[1] < logged[2]  # warming up, one step per iteration


def test_gradient_norm_is_unscaled_by_the_amp_loss_scale():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0]) * 1024
    assert gradient_norm([p], scale=1024.0) == pytest.approx(5.0)
    assert gradient_norm([torch.nn.Parameter(torch.zeros(1))]) == 0.0


def test_batch_dice_of_a_perfect_prediction_is_one():
    label = torch.zeros(2, 1, 8, 8)
    label[:, :, 2:5, 2:5] = 1
    logits = torch.cat([1 - label, label], dim=1) * 10
    assert mean_dice_from_logits(logits, label) == pytest.approx(1.0)
    assert math.isnan(
        mean_dice_from_logits(
            torch.zeros(1, 2, 4, 4) + torch.tensor([1.0, 0.0])[:, None, None], torch.zeros(1, 1, 4, 4)
        )
    )


def test_batch_scalars_take_the_loss_and_telemetry_keys_only():
    output = {"loss": torch.tensor(0.5, requires_grad=True), "pred": torch.zeros(2, 2), "batch/lr": 0.1, "other": 3.0}
    assert batch_scalars(output) == {"batch/loss": 0.5, "batch/lr": 0.1}
    assert batch_scalars([output]) == {"batch/loss": 0.5, "batch/lr": 0.1}
    assert batch_scalars(None) == {}


def test_gradient_norm_needs_a_monai_trainer():
    with pytest.raises(ValueError, match="MONAI trainer"):
        IterationTelemetry().attach(Engine(lambda e, b: None))
