from __future__ import annotations

import json
import os

import optuna
import pytest
from ignite.engine import Engine, Events

from radiobundles.slice2d.hpo import DiceReporter, _parse_set, run_search, search_space, suggest_overrides

# a network and data small enough for two trials in seconds on a CPU


@pytest.mark.slow
def test_two_tiny_trials_report_validation_dice_every_epoch(tiny_axial_store, tiny_overrides, tmp_path):
    study = run_search(
        tiny_axial_store, n_trials=2, max_epochs=2, output_dir=str(tmp_path), overrides=tiny_overrides, seed=1
    )
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [1, 2]  # one validation Dice per epoch
        assert trial.value == max(trial.intermediate_values.values())
        assert set(trial.params) == {"learning_rate", "max_lr", "loss", "aug_prob"}
        assert os.path.isfile(tmp_path / f"trial_{trial.number:04d}" / "models" / "best.pt")
    summary = json.loads((tmp_path / "best_params.json").read_text())
    assert summary["best_params"] == study.best_params
    assert (tmp_path / "trials.csv").is_file()


class _FakeTrial:
    def __init__(self, prune_at: int) -> None:
        self.prune_at = prune_at
        self.reported: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reported.append((value, step))

    def should_prune(self) -> bool:
        return len(self.reported) >= self.prune_at


def test_a_pruned_trial_stops_its_trainer_after_the_epoch():
    trainer = Engine(lambda e, b: None)
    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_mean_dice=0.1))
    reporter = DiceReporter(_FakeTrial(prune_at=2), trainer)
    reporter.attach(evaluator)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    trainer.run([0, 1], max_epochs=5)
    assert reporter.pruned and trainer.state.epoch == 2
    assert reporter.trial.reported == [(0.1, 1), (0.1, 2)]


def test_the_search_space_covers_lr_max_lr_loss_and_augmentation():
    trial = optuna.trial.FixedTrial({"learning_rate": 1e-4, "max_lr": 1e-2, "loss": "dice", "aug_prob": 0.3})
    assert suggest_overrides(trial) == {"learning_rate": 1e-4, "max_lr": 1e-2, "loss": "dice", "aug_prob": 0.3}


def test_fixed_overrides_parse_json_values():
    assert _parse_set(["num_classes=3", "slice_size=[64, 64]", "loss=dice"]) == {
        "num_classes": 3,
        "slice_size": [64, 64],
        "loss": "dice",
    }
    with pytest.raises(SystemExit, match="key=value"):
        _parse_set(["num_classes"])


def test_search_space_from_configs_gives_optuna_the_former_distributions():
    # the ranges that lived in hpo.py as Python literals, now in configs/hpo/mri_slice_segmentation_2d.yaml
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    trial = optuna.create_study().ask()
    suggest_overrides(trial)
    assert trial.distributions == {
        "learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
        "max_lr": FloatDistribution(1e-3, 3e-2, log=True),
        "loss": CategoricalDistribution(["dice", "cross_entropy", "dice_ce"]),
        "aug_prob": FloatDistribution(0.0, 0.5),
    }


def test_a_search_space_entry_of_unknown_type_is_a_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("search_space:\n  lr: {type: int, low: 1, high: 3}\n")
    with pytest.raises(ValueError, match="use float or categorical"):
        search_space("bad.yaml", configs_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no settings file 'missing\.yaml'"):
        search_space("missing.yaml", configs_dir=tmp_path)
