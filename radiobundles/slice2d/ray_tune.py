"""Hyper-parameter search for the ``mri_slice_segmentation_2d`` bundle with Ray Tune.

The Ray Tune twin of :mod:`radiobundles.slice2d.hpo` (Optuna): the same bundle run
(``train.json``: ``initialize`` / ``run`` / ``finalize``), the same overrides, the same search
space (``configs/hpo/mri_slice_segmentation_2d.yaml``, turned into ``tune.loguniform`` /
``tune.uniform`` / ``tune.choice``), given as ``tune.Tuner(trainable, param_space=...)``.
After every epoch each trial reports ``training_loss`` (epoch mean), ``validation_loss`` (the
bundle's loss on the validation slices), ``epoch`` and ``val_mean_dice`` with
``ray.tune.report`` (in Ray >= 2.41 ``ray.train.report`` is for Ray Train workers and raises
in a Tune trial; the keys are those of the slice-training harness this bundle replaces), and a
checkpoint: the bundle's own ``last.pt`` / ``best.pt``. ASHA (``ASHAScheduler``, settings in
the same YAML under ``asha``) stops trials that fall behind at its rungs. A trial that is
restarted (``FailureConfig(max_failures)``, or ``--resume`` after an interrupted search)
gets its checkpoint back and the bundle resumes from it (``resume=true``: model, optimizer,
scheduler, epoch, early stopping), and its history keeps the epochs it reported before.

Run it::

    python -m radiobundles.slice2d.ray_tune --dataset_dir /data/store --num_samples 20 \\
        --max_epochs 10 --output_dir tune_runs --set num_classes=3      # add --address auto for a cluster

``<output_dir>/<name>/`` holds Tune's trial folders (each trial's bundle run under
``bundle/``, its checkpoints under ``checkpoint_######``); ``best_config.json`` names the best
trial, its config and checkpoint; ``trials.csv`` is the trial table.

Example:
    >>> results = run_tune("/data/store", num_samples=3, max_epochs=2, output_dir="tune")
    >>> results.get_best_result().config
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from radiobundles.settings import CONFIGS_DIR, load_settings
from radiobundles.slice2d.hpo import DEFAULT_BUNDLE, KEY_METRIC, SEARCH_SPACE, _parse_set, search_parser, search_space

__all__ = ["asha_settings", "param_space", "run_tune", "train_bundle"]

logger = logging.getLogger(__name__)
_CHECKPOINT_FILES = ("last.pt", "best.pt")  # radiobundles.training.checkpoint names


def param_space(space: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Ray Tune domains for the search space (default: :func:`~radiobundles.slice2d.hpo.search_space`)."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, spec in (space if space is not None else search_space()).items():
        if spec["type"] == "categorical":
            out[key] = tune.choice(list(spec["choices"]))
        elif spec.get("log"):
            out[key] = tune.loguniform(float(spec["low"]), float(spec["high"]))
        else:
            out[key] = tune.uniform(float(spec["low"]), float(spec["high"]))
    return out


def asha_settings(name: str = SEARCH_SPACE, configs_dir: str = str(CONFIGS_DIR)) -> dict[str, Any]:
    """ASHA's ``grace_period`` / ``reduction_factor`` from the search-space YAML (``asha:``)."""
    return dict(load_settings(name, configs_dir).get("asha", {}))


class _EpochReporter:
    """Mean training loss per epoch, validation loss on raw logits, and the Tune report."""

    def __init__(self, workflow: Any, models_dir: str) -> None:
        import torch
        from monai.engines import IterationEvents
        from monai.handlers import from_engine

        self.trainer = workflow.parser.get_parsed_content("train#trainer")
        self.evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        self.loss_function = workflow.parser.get_parsed_content("loss_function")
        self.models_dir = models_dir
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self._torch, self._from_engine = torch, from_engine
        from ignite.engine import Events

        self.trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: self.train_losses.clear())
        self.trainer.add_event_handler(Events.ITERATION_COMPLETED, self._train_iteration)
        self.evaluator.add_event_handler(Events.EPOCH_STARTED, lambda _: self.val_losses.clear())
        # before post-processing (argmax / one-hot): the loss needs the network's logits
        self.evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._val_forward)
        # after the bundle's own handlers: validation ran, last.pt / best.pt are written
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, self._report)

    def _train_iteration(self, engine: Any) -> None:
        self.train_losses.append(float(self._from_engine(["loss"], first=True)(engine.state.output)[0]))

    def _val_forward(self, engine: Any) -> None:
        out = engine.state.output
        with self._torch.no_grad():
            self.val_losses.append(float(self.loss_function(out["pred"], out["label"])))

    def _report(self, engine: Any) -> None:
        from ray import tune

        metrics = {
            "epoch": engine.state.epoch,
            "training_loss": sum(self.train_losses) / max(1, len(self.train_losses)),
            "validation_loss": sum(self.val_losses) / len(self.val_losses) if self.val_losses else float("nan"),
            KEY_METRIC: float(self.evaluator.state.metrics.get(KEY_METRIC, float("nan"))),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for name in _CHECKPOINT_FILES:
                src = os.path.join(self.models_dir, name)
                if os.path.isfile(src):
                    shutil.copy2(src, tmp)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def train_bundle(
    config: Mapping[str, Any],
    dataset_dir: str,
    max_epochs: int,
    bundle_root: str = str(DEFAULT_BUNDLE),
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """The Tune trainable: one bundle run with ``config`` (the sampled overrides) on top of ``overrides``.

    Resumes from the trial's checkpoint when Tune hands one back (a restarted trial).
    """
    from ray import tune

    run_dir = os.path.join(tune.get_context().get_trial_dir(), "bundle")
    models_dir = os.path.join(run_dir, "models")
    os.makedirs(models_dir, exist_ok=True)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            for name in _CHECKPOINT_FILES:
                if os.path.isfile(os.path.join(ckpt_dir, name)):
                    shutil.copy2(os.path.join(ckpt_dir, name), models_dir)
    configs = os.path.join(bundle_root, "configs")
    with _bundle_code(bundle_root):
        _run_workflow(configs, models_dir, run_dir, dataset_dir, max_epochs, overrides, config, checkpoint is not None)


def _bundle_code(bundle_root: str) -> Any:
    """The bundle's own ``scripts`` importable during the run (the config's ``scripts.…``
    targets), as :func:`radiobundles.slice2d.hpo.run_trial` does; a no-op for a bundle
    layout whose code lives in the package (``radiobundles.resources`` without ``bundle_scripts``)."""
    try:
        from radiobundles.resources import bundle_scripts
    except ImportError:
        return contextlib.nullcontext()
    return bundle_scripts(bundle_root)


def _run_workflow(
    configs: str,
    models_dir: str,
    run_dir: str,
    dataset_dir: str,
    max_epochs: int,
    overrides: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    resume: bool,
) -> None:
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=os.path.join(configs, "train.json"),
        meta_file=os.path.join(configs, "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **{
            **dict(overrides or {}),
            **dict(config),
            "dataset_dir": dataset_dir,
            "bundle_root": run_dir,
            "max_epochs": max_epochs,
            "resume": resume,
        },
    )
    workflow.initialize()
    _EpochReporter(workflow, models_dir)
    try:
        workflow.run()
    finally:
        workflow.finalize()


def _innermost(err: BaseException) -> str:
    """A trial's own error in one line: Ray wraps it (``RayTaskError.cause``), MONAI chains it."""
    err = getattr(err, "cause", None) or err
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"[:400]


def _upload_logs_on_recover() -> Any:
    """A Tune callback: when a trial is to be restarted, upload its ``progress.csv`` and
    ``result.json`` from the driver's staging folder to the storage path first.

    Tune's CSV and JSON loggers download those files from the storage path when a trial
    restarts, and the driver uploads them only at its experiment snapshots (every 10 s or
    more). A trial that failed between two snapshots came back with its earlier rows gone
    (seen in CI; ray-project/ray#41668, open at Ray 2.60), and with them its best epoch
    from ``trials.csv`` and ``best_config.json``.
    """
    from pathlib import Path

    import pyarrow.fs
    from ray.tune import Callback
    from ray.tune.result import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE

    class UploadLogsOnRecover(Callback):
        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            for name in (EXPR_PROGRESS_FILE, EXPR_RESULT_FILE):
                local = Path(trial.local_path, name)
                if local.is_file():
                    pyarrow.fs.copy_files(
                        local.as_posix(),
                        Path(trial.storage.trial_fs_path, name).as_posix(),
                        destination_filesystem=trial.storage.storage_filesystem,
                    )

    return UploadLogsOnRecover()


def run_tune(
    dataset_dir: str,
    num_samples: int = 20,
    max_epochs: int = 10,
    output_dir: str = "tune_runs",
    bundle_root: str | os.PathLike = DEFAULT_BUNDLE,
    overrides: Mapping[str, Any] | None = None,
    space: Mapping[str, Any] | None = None,
    name: str = "mri_slice_segmentation_2d",
    seed: int = 0,
    cpus_per_trial: float = 1,
    max_failures: int = 1,
    resume: bool = False,
) -> Any:
    """Run (or, with ``resume``, continue) a Tune search maximising ``val_mean_dice``; returns
    the ``ResultGrid`` and writes ``best_config.json`` and ``trials.csv`` under ``output_dir/name``.

    Uses the Ray cluster this process is connected to (``ray.init`` first), else starts a local one.
    ``space`` replaces the YAML's search space (Tune domains or plain values).
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    storage = os.path.abspath(output_dir)
    experiment = os.path.join(storage, name)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_bundle,
            dataset_dir=dataset_dir,
            max_epochs=max_epochs,
            bundle_root=os.fspath(bundle_root),
            overrides=dict(overrides or {}),
        ),
        {"cpu": cpus_per_trial},
    )
    if resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
    else:
        asha = asha_settings()
        tuner = tune.Tuner(
            trainable,
            param_space=dict(space) if space is not None else param_space(),
            tune_config=tune.TuneConfig(
                metric=KEY_METRIC,
                mode="max",
                num_samples=num_samples,
                scheduler=ASHAScheduler(
                    time_attr="epoch",
                    max_t=max_epochs,
                    grace_period=int(asha.get("grace_period", 1)),
                    reduction_factor=float(asha.get("reduction_factor", 2)),
                ),
                search_alg=BasicVariantGenerator(random_state=seed),
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[_upload_logs_on_recover()],
                verbose=1,
            ),
        )
    results = tuner.fit()
    if not any(r.metrics and KEY_METRIC in r.metrics for r in results):
        # else pandas says only KeyError: 'val_mean_dice' and the trials' real errors are lost
        causes = "; ".join(_innermost(e) for e in results.errors[:3]) or "no error recorded"
        raise RuntimeError(
            f"no trial of {experiment} reported {KEY_METRIC}: {results.num_errors} of {len(results)} "
            f"trial(s) failed ({causes}); each trial's error.txt and log are under {experiment}"
        )
    table = results.get_dataframe(filter_metric=KEY_METRIC, filter_mode="max")
    table.to_csv(os.path.join(experiment, "trials.csv"), index=False)
    best = results.get_best_result(metric=KEY_METRIC, mode="max", scope="all")
    best_ckpt = best.get_best_checkpoint(metric=KEY_METRIC, mode="max") if best.best_checkpoints else None
    summary = {
        "best_value": float(best.metrics_dataframe[KEY_METRIC].max()),
        "best_config": best.config,
        "best_trial_dir": best.path,
        "best_checkpoint": best_ckpt.path if best_ckpt is not None else None,
    }
    with open(os.path.join(experiment, "best_config.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = search_parser(
        "python -m radiobundles.slice2d.ray_tune",
        __doc__.split("\n")[0],
        output_dir="tune_runs",
        epochs_help="epochs per trial (ASHA's max_t)",
    )
    parser.add_argument("--num_samples", type=int, default=20, help="trials")
    parser.add_argument("--name", default="mri_slice_segmentation_2d", help="experiment folder under --output_dir")
    parser.add_argument("--cpus_per_trial", type=float, default=1)
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join ('auto', ray://host:10001); default: local"
    )
    parser.add_argument("--resume", action="store_true", help="continue the search in --output_dir/--name")
    args = parser.parse_args(argv)
    import ray

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ray.init(address=args.address, include_dashboard=False if args.address is None else None)
    results = run_tune(
        args.dataset_dir,
        num_samples=args.num_samples,
        max_epochs=args.max_epochs,
        output_dir=args.output_dir,
        bundle_root=args.bundle_root,
        overrides=_parse_set(args.set),
        name=args.name,
        seed=args.seed,
        cpus_per_trial=args.cpus_per_trial,
        resume=args.resume,
    )
    with open(os.path.join(os.path.abspath(args.output_dir), args.name, "best_config.json")) as fh:
        best = json.load(fh)
    print(f"{len(results)} trials; best validation Dice {best['best_value']} with {best['best_config']}")
    print(f"best checkpoint: {best['best_checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
