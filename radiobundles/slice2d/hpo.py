"""Hyper-parameter search for the ``mri_slice_segmentation_2d`` bundle with Optuna.

Each trial runs the bundle's own ``train.json`` (``initialize`` / ``run`` / ``finalize``) with
sampled overrides, reports the validation mean Dice after every epoch (``trial.report``) and
is pruned by Optuna's median rule when it falls behind. The search space, declared in
``configs/hpo/mri_slice_segmentation_2d.yaml``:

============== ============================================= ==================================
parameter      range                                         bundle override
============== ============================================= ==================================
learning_rate  1e-5 .. 1e-3 (log): OneCycle's starting rate  ``learning_rate``
max_lr         1e-3 .. 3e-2 (log): OneCycle's peak rate      ``max_lr``
loss           dice, cross_entropy, dice_ce                  ``loss``
aug_prob       0 .. 0.5: probability of each augmentation    ``aug_prob``
============== ============================================= ==================================

Run it::

    python -m radiobundles.slice2d.hpo --dataset_dir /data/store --n_trials 20 --max_epochs 10 \\
        --output_dir hpo_runs --storage sqlite:///hpo_runs/study.db --set num_classes=3

Each trial writes its checkpoints and TensorBoard logs under ``<output_dir>/trial_####``;
``best_params.json`` and ``trials.csv`` summarise the study.

Example:
    >>> study = run_search("/data/store", n_trials=2, max_epochs=1, output_dir="hpo")
    >>> study.best_params
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from radiobundles.resources import bundle_path, bundle_scripts
from radiobundles.settings import CONFIGS_DIR, load_settings

__all__ = [
    "DEFAULT_BUNDLE",
    "SEARCH_SPACE",
    "DiceReporter",
    "run_search",
    "run_trial",
    "search_parser",
    "search_space",
    "suggest_overrides",
]

DEFAULT_BUNDLE = bundle_path("mri_slice_segmentation_2d")  # radiobundles.resources: checkout, wheel or env
SEARCH_SPACE = "hpo/mri_slice_segmentation_2d.yaml"  # in configs/ (radiobundles.settings)
KEY_METRIC = "val_mean_dice"

logger = logging.getLogger(__name__)


def search_space(name: str = SEARCH_SPACE, configs_dir: str | Path = CONFIGS_DIR) -> dict[str, dict[str, Any]]:
    """The search space, ``override -> {type, low, high, log | choices}``, from ``configs/``."""
    space = load_settings(name, configs_dir)["search_space"]
    for key, spec in space.items():
        if spec.get("type") not in ("float", "categorical"):
            raise ValueError(f"{name}: {key!r} has type {spec.get('type')!r}; use float or categorical")
    return space


def suggest_overrides(trial: Any, space: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Sample the searched bundle overrides for ``trial`` (an ``optuna.Trial``) from ``space``
    (default: :func:`search_space`)."""
    out: dict[str, Any] = {}
    for key, spec in (space if space is not None else search_space()).items():
        if spec["type"] == "categorical":
            out[key] = trial.suggest_categorical(key, list(spec["choices"]))
        else:
            out[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return out


class DiceReporter:
    """Reports the validation Dice to an Optuna trial after each validation; stops pruned trials.

    Args:
        trial: the ``optuna.Trial``.
        trainer: the trainer to stop when the trial is pruned.
        metric_name: the evaluator's metric to report.
    """

    def __init__(self, trial: Any, trainer: Engine, metric_name: str = KEY_METRIC) -> None:
        self.trial = trial
        self.trainer = trainer
        self.metric_name = metric_name
        self.values: list[float] = []
        self.pruned = False

    def attach(self, evaluator: Engine) -> None:
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, evaluator: Engine) -> None:
        value = float(evaluator.state.metrics[self.metric_name])
        self.values.append(value)
        self.trial.report(value, step=self.trainer.state.epoch)
        if self.trial.should_prune():
            self.pruned = True
            # finish the epoch cleanly: checkpoints stay consistent, the writer is closed in finalize
            self.trainer.terminate()


def run_trial(
    trial: Any,
    dataset_dir: str,
    output_dir: str,
    max_epochs: int,
    bundle_root: str | os.PathLike = DEFAULT_BUNDLE,
    overrides: Mapping[str, Any] | None = None,
) -> float:
    """Train the bundle once with the trial's overrides; the best validation Dice is the objective.

    Raises:
        optuna.TrialPruned: the pruner stopped the trial.
    """
    import optuna
    from monai.bundle import ConfigWorkflow

    configs = Path(bundle_root) / "configs"
    trial_dir = os.path.abspath(os.path.join(output_dir, f"trial_{trial.number:04d}"))
    params = suggest_overrides(trial)
    settings = {
        **dict(overrides or {}),
        **params,
        "dataset_dir": dataset_dir,
        "bundle_root": trial_dir,
        "max_epochs": max_epochs,
    }
    # the config's scripts.… are the bundle's own code (its scripts/), outputs go to trial_dir
    with bundle_scripts(bundle_root):
        workflow = ConfigWorkflow(
            config_file=str(configs / "train.json"),
            meta_file=str(configs / "metadata.json"),
            logging_file=False,
            workflow_type="train",
            **settings,
        )
        workflow.initialize()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        reporter = DiceReporter(trial, trainer)
        reporter.attach(workflow.parser.get_parsed_content("validate#evaluator"))
        try:
            workflow.run()
        finally:
            workflow.finalize()
    if reporter.pruned:
        raise optuna.TrialPruned(f"pruned after epoch {trainer.state.epoch}")
    if not reporter.values:
        raise RuntimeError("the trial ran no validation; check val_interval against max_epochs")
    return max(reporter.values)


def run_search(
    dataset_dir: str,
    n_trials: int = 20,
    max_epochs: int = 10,
    output_dir: str = "hpo_runs",
    bundle_root: str | os.PathLike = DEFAULT_BUNDLE,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str = "mri_slice_segmentation_2d",
    timeout: float | None = None,
) -> Any:
    """Run (or continue, with a ``storage``) a study maximising validation Dice; returns it.

    ``overrides`` are fixed bundle settings for every trial (e.g. ``{"num_classes": 3}``).
    """
    import optuna

    os.makedirs(output_dir, exist_ok=True)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=storage is not None,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )
    study.optimize(
        lambda trial: run_trial(trial, dataset_dir, output_dir, max_epochs, bundle_root, overrides),
        n_trials=n_trials,
        timeout=timeout,
    )
    study.trials_dataframe().to_csv(os.path.join(output_dir, "trials.csv"), index=False)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        summary = {
            "best_value": study.best_value,
            "best_params": study.best_params,
            "best_trial": study.best_trial.number,
        }
        with open(os.path.join(output_dir, "best_params.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
    return study


def _parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value (value as JSON), got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def search_parser(prog: str, description: str | None, output_dir: str, epochs_help: str) -> argparse.ArgumentParser:
    """The arguments both search front ends take (this module's Optuna search and
    :mod:`radiobundles.slice2d.ray_tune`): data, epochs, output, bundle, seed and ``--set``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--dataset_dir", required=True, help="TileDB store or folder with imagesTr/ and labelsTr/")
    parser.add_argument("--max_epochs", type=int, default=10, help=epochs_help)
    parser.add_argument("--output_dir", default=output_dir)
    parser.add_argument("--bundle_root", default=str(DEFAULT_BUNDLE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fixed bundle override (JSON value)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = search_parser(
        "python -m radiobundles.slice2d.hpo",
        __doc__.split("\n")[0].replace("``", "") if __doc__ else None,
        output_dir="hpo_runs",
        epochs_help="epochs per trial",
    )
    parser.add_argument("--n_trials", type=int, default=20)
    parser.add_argument("--storage", default=None, help="Optuna storage URL, e.g. sqlite:///hpo_runs/study.db")
    parser.add_argument("--study_name", default="mri_slice_segmentation_2d")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the whole search")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    study = run_search(
        args.dataset_dir,
        n_trials=args.n_trials,
        max_epochs=args.max_epochs,
        output_dir=args.output_dir,
        bundle_root=args.bundle_root,
        overrides=_parse_set(args.set),
        seed=args.seed,
        storage=args.storage,
        study_name=args.study_name,
        timeout=args.timeout,
    )
    done = [t for t in study.trials if t.value is not None]
    print(f"{len(study.trials)} trials ({len(done)} complete); results in {os.path.abspath(args.output_dir)}")
    if done:
        print(f"best validation Dice {study.best_value:.4f} with {study.best_params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
