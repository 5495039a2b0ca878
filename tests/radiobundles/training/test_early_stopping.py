from __future__ import annotations

import pytest
import torch

from radiobundles.training import CheckpointManager, ResumableEarlyStopHandler, metric_score


def test_training_stops_after_patience_validations_without_improvement(run_factory):
    run = run_factory(values=[0.5, 0.4, 0.45, 0.3, 0.9], max_epochs=5)
    stopper = ResumableEarlyStopHandler(patience=2, metric_name="val_mean_dice", trainer=run.trainer)
    stopper.attach(run.evaluator)
    run.trainer.run()
    assert run.trainer.state.epoch == 3


def test_an_early_stopped_run_ends_with_the_best_weights(run_factory, tmp_path):
    run = run_factory(values=[0.2, 0.8, 0.5, 0.4, 0.3, 0.2], max_epochs=6)
    ResumableEarlyStopHandler(patience=2, metric_name="val_mean_dice", trainer=run.trainer).attach(run.evaluator)
    CheckpointManager(
        tmp_path, run.network, run.optimizer, evaluator=run.evaluator, key_metric_name="val_mean_dice"
    ).attach(run.trainer)
    run.trainer.run()
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert run.trainer.state.epoch == 4
    assert best["epoch"] == 2
    assert all(torch.equal(run.network.state_dict()[k], v) for k, v in best["model"].items())


def test_counter_and_best_score_survive_a_state_dict_round_trip(run_factory):
    run = run_factory(values=[0.5, 0.4], max_epochs=2)
    stopper = ResumableEarlyStopHandler(patience=5, metric_name="val_mean_dice", trainer=run.trainer)
    stopper.attach(run.evaluator)
    run.trainer.run()
    state = stopper.state_dict()
    assert (state["counter"], state["best_score"]) == (1, 0.5)

    restored = ResumableEarlyStopHandler(patience=5, metric_name="val_mean_dice")
    restored.load_state_dict(state)  # before a trainer is set: kept until set_trainer
    assert restored.state_dict()["counter"] == 1
    restored.set_trainer(run_factory().trainer)
    assert restored.counter == 1 and restored._handler.best_score == 0.5


def test_min_mode_negates_the_metric(run_factory):
    run = run_factory(values=[0.7])
    run.evaluator.run()
    assert metric_score("val_mean_dice", mode="min")(run.evaluator) == pytest.approx(-0.7)


def test_a_missing_metric_names_the_available_ones(run_factory):
    run = run_factory(values=[0.7])
    run.evaluator.run()
    with pytest.raises(KeyError, match=r"watches 'val_loss'.*val_mean_dice"):
        metric_score("val_loss")(run.evaluator)


def test_metric_name_or_score_function_is_required():
    with pytest.raises(ValueError, match="metric_name"):
        ResumableEarlyStopHandler(patience=3)
