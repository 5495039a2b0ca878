"""Ray Tune search over the mri_slice_segmentation_2d bundle on a local 2-CPU Ray (loopback)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from radiobundles.slice2d.hpo import DEFAULT_BUNDLE, search_space

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")

from radiobundles.slice2d.ray_tune import param_space, run_tune  # noqa: E402


@pytest.fixture
def tiny(tiny_overrides):
    """The tiny network (conftest), with the loss and augmentation that search samples fixed."""
    return {**tiny_overrides, "loss": "dice_ce", "aug_prob": 0.0}


@pytest.fixture(scope="module")
def local_ray():
    """2 CPUs, no dashboard, a 100 MB object store; gone after the module."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024, log_to_driver=False)
    yield
    ray.shutdown()


def test_the_yaml_search_space_becomes_tune_domains():
    space = param_space()
    assert set(space) == set(search_space())
    assert isinstance(space["loss"], tune.search.sample.Categorical)
    lr = space["learning_rate"]
    assert isinstance(lr.get_sampler(), tune.search.sample.LogUniform) or "LogUniform" in repr(lr.get_sampler())
    assert (lr.lower, lr.upper) == (1e-5, 1e-3)


@pytest.mark.slow
def test_three_trials_one_stopped_by_asha_best_config_and_checkpoint_on_disk(
    local_ray, tiny_axial_store, tiny, tmp_path
):
    # Two trials at a rate ~0 keep the initial network's Dice (0.036 here); the third, started
    # when one of them ends (2 CPUs), trains at 3e-2 and falls to Dice 0.005 in epoch 1 (the tiny
    # net collapses to background): below the median at ASHA's first rung, so it is stopped there.
    space = {
        "max_lr": tune.grid_search([1e-12, 1e-12, 3e-2]),
        "learning_rate": tune.sample_from(lambda config: config["max_lr"] / 10),
    }
    results = run_tune(
        tiny_axial_store, num_samples=1, max_epochs=2, output_dir=str(tmp_path), overrides=tiny, space=space
    )
    assert len(results) == 3 and not results.errors
    epochs = {r.config["max_lr"]: [] for r in results}
    for r in results:
        df = r.metrics_dataframe
        assert {"training_loss", "validation_loss", "epoch", "val_mean_dice"} <= set(df.columns)
        assert list(df["epoch"]) == list(range(1, len(df) + 1))  # one report per epoch
        epochs[r.config["max_lr"]].append(int(df["epoch"].max()))
    assert epochs[3e-2] == [1], f"the trial ASHA should stop ran {epochs[3e-2]} epochs"
    assert epochs[1e-12] == [2, 2]
    summary = json.loads((tmp_path / "mri_slice_segmentation_2d" / "best_config.json").read_text())
    assert summary["best_config"]["max_lr"] == 1e-12
    assert summary["best_value"] == max(r.metrics_dataframe["val_mean_dice"].max() for r in results)
    assert os.path.isfile(os.path.join(summary["best_checkpoint"], "best.pt"))
    assert os.path.isfile(os.path.join(summary["best_checkpoint"], "last.pt"))
    assert (tmp_path / "mri_slice_segmentation_2d" / "trials.csv").is_file()


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_restarted_from_its_checkpoint_and_trains_only_the_missing_epochs(
    local_ray, tiny_axial_store, tiny, tmp_path, monkeypatch
):
    # The trial's process exits (os._exit: no cleanup, as a killed worker) when its 2nd epoch starts,
    # once (a marker file records it). The crash is attached through the bundle's own `initialize`
    # expressions (a plain override, no test hook in product code). FailureConfig(max_failures=1)
    # restarts the trial; it must get its epoch-1 checkpoint back and train epoch 2 only.
    # Before it exits, the trial leaves empty result.json/progress.csv in its folder under the
    # storage path: what the driver uploads there at an experiment snapshot taken after the
    # trial started and before its epoch-1 report (snapshots are 10 s or more apart; this is how
    # CI once lost epoch 1's row). Tune's loggers download those files when the trial restarts,
    # so without run_tune's upload on recovery the restarted trial's history began at epoch 2
    # (ray-project/ray#41668). No snapshot may come between (TUNE_GLOBAL_CHECKPOINT_S).
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1000")
    marker = tmp_path / "crashed_once"
    trial_dirs = str(tmp_path / "tune" / "mri_slice_segmentation_2d" / "train_bundle_*")
    stale_snapshot = (  # the marker records how many files were emptied
        f"pathlib.Path({str(marker)!r}).write_text(str(len([open(os.path.join(d, f), 'w').close() "
        f"for d in glob.glob({trial_dirs!r}) for f in ('result.json', 'progress.csv')])))"
    )
    # (the word "import" must stay out of the expression: MONAI parses any "$..." holding it as
    # an import statement, so os, glob, pathlib and Events come in through the config's own `imports`)
    crash_once = (
        "$@train#trainer.add_event_handler(Events.EPOCH_STARTED, "
        f"lambda e: None if e.state.epoch < 2 or os.path.exists({str(marker)!r}) "
        f"else ({stale_snapshot}, os._exit(1)))"
    )
    train_json = json.loads((DEFAULT_BUNDLE / "configs" / "train.json").read_text())
    overrides = {
        **tiny,
        "imports": [
            *train_json["imports"],
            "$import os",
            "$import glob",
            "$import pathlib",
            "$from ignite.engine import Events",
        ],
        "initialize": [*train_json["initialize"], crash_once],
    }
    results = run_tune(
        tiny_axial_store,
        num_samples=1,
        max_epochs=2,
        output_dir=str(tmp_path / "tune"),
        overrides=overrides,
        space={"learning_rate": 1e-4},
        max_failures=1,
    )
    assert marker.is_file(), "the trial never crashed: the test proves nothing"
    assert marker.read_text() == "2", "the stale snapshot missed the trial's folder: the test proves nothing"
    assert len(results) == 1 and not results.errors
    (result,) = results
    # progress rows of both attempts: epoch 1 before the crash, then epoch 2 (not 1 again) after it
    assert list(result.metrics_dataframe["epoch"]) == [1, 2]
    last = torch.load(os.path.join(result.checkpoint.path, "last.pt"), map_location="cpu", weights_only=True)
    assert last["epoch"] == 2
    assert os.path.isfile(os.path.join(result.checkpoint.path, "best.pt"))


@pytest.mark.slow
def test_a_search_whose_every_trial_fails_says_why_instead_of_a_missing_metric(
    local_ray, tiny_axial_store, tiny, tmp_path
):
    # a network the bundle cannot build: every trial fails before its first report
    broken = {**tiny, "network_def#_target_": "monai.networks.nets.NoSuchNet"}
    with pytest.raises(RuntimeError) as err:
        run_tune(
            tiny_axial_store,
            num_samples=1,
            max_epochs=1,
            output_dir=str(tmp_path),
            overrides=broken,
            space={"max_lr": tune.grid_search([1e-3])},
            max_failures=0,
        )
    message = str(err.value)
    assert "no trial" in message and "val_mean_dice" in message
    assert "NoSuchNet" in message  # the trial's own error reaches the user
    assert str(tmp_path) in message  # and where its log is
    assert not (tmp_path / "mri_slice_segmentation_2d" / "best_config.json").exists()
