"""Training as 3D Slicer asks for it, without a server: the /info/ options it posts back, the
checkpoint it starts from, and the progress it reads from ``train_stats``."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from monailabel_app.lib.bundle import find_bundle, prepare_bundle
from monailabel_app.lib.errors import InvalidRequest
from monailabel_app.lib.train import StoreBundleTrainTask, bundle_overrides, model_choices
from monailabel_app.lib.train_stats import TrainStatsWriter, read_train_stats
from radiobject_adapter.address import parse_address, volume_address

BUNDLE = "ct_segmentation_3d"


@pytest.fixture
def task(tmp_path) -> StoreBundleTrainTask:
    src = tmp_path / "src" / BUNDLE
    shutil.copytree(
        find_bundle(BUNDLE, app_dir=str(tmp_path)), src, ignore=shutil.ignore_patterns("*.pt", "*.ts", "runs", "eval")
    )
    path = prepare_bundle(str(src), str(tmp_path / "ws"))
    return StoreBundleTrainTask(path, {}, tracking_uri="sqlite:///x.db")


def test_datalists_reach_the_bundle_config_as_monai_label_sets_them(task):
    """No file, no rewrite: store addresses in ``train#dataset#data`` come out of the bundle's
    config parser as they went in; an old ``#`` address comes out in the new form."""
    items = [{"image": volume_address("/data/store", "CT", "case_000"), "label": "/data/store#seg/case_000"}]
    overrides = task._update_overrides({"train#dataset#data": items, "validate#dataset#data": items[:1]})
    assert overrides["train#dataset#data"] == items
    parser = ConfigParser()
    parser.read_config(os.path.join(task.bundle_path, "configs", "train.json"))
    parser.update({"train#dataset#data": overrides["train#dataset#data"]})
    parsed = parser.get_parsed_content("train#dataset#data", instantiate=False)
    assert parsed == [{"image": "/data/store::CT/case_000", "label": "/data/store::seg/case_000"}]
    assert parse_address(parsed[0]["label"]) == parse_address(items[0]["label"])


def slicer_params(config: dict) -> dict:
    """``getParamsFromConfig``: every list reduced to its first item."""
    return {k: v[0] if isinstance(v, list) else v for k, v in config.items()}


def test_every_option_slicer_posts_back_is_accepted(task):
    config = task.config()
    assert config["run_id"] == ""  # MONAI Label's default, which Slicer posts as it is
    request = slicer_params(config)
    task._check_request(request)
    assert request["run_id"] == "run" and request["model_filename"] == "model.pt"
    overrides = bundle_overrides(request)
    offered = config["patch_size"]  # one edge for a cube (a scalar), else "x,y,z" text
    expected = [offered] * 3 if isinstance(offered, int) else [int(v) for v in offered.split(",")]
    assert overrides["patch_size"] == expected
    # every value of every offered list works too (the annotator picks it in a combo box)
    for key, values in config.items():
        for value in values if isinstance(values, list) else []:
            chosen = {**request, key: value}
            task._check_request(chosen)
            bundle_overrides(chosen)


def test_the_store_replaces_the_bundles_placeholder_dataset(task):
    class Access:
        uri, image_collection, label_collection = "/data/store", "CT", "seg"

    class Store:
        access = Access()

    assert task._store_values(Store()) == {
        "dataset_dir": "/data/store",
        "image_collection": "CT",
        "label_collection": "seg",
    }
    task._store_overrides = task._store_values(Store())
    overrides = task._update_overrides({"train#handlers": []})
    assert overrides["dataset_dir"] == "/data/store"
    assert overrides["train#handlers"][-1]["_target_"].endswith("TrainStatsWriter")


def test_unknown_run_ids_and_checkpoints_are_refused_with_the_choices(task):
    with pytest.raises(InvalidRequest, match="run_id 'nope'"):
        task._check_request({"run_id": "nope"})
    with pytest.raises(InvalidRequest, match=r"model_filename 'gone.pt'.*\['model.pt'\]"):
        task._check_request({"run_id": "", "model_filename": "gone.pt"})


def test_after_a_training_model_pt_stays_the_first_choice(tmp_path):
    for name in ("periodic_0010.pt", "last.pt", "best.pt", "model.pt"):
        torch.save({}, tmp_path / name)
    assert model_choices(str(tmp_path)) == ["model.pt", "best.pt", "last.pt", "periodic_0010.pt"]


def test_patch_sizes_may_come_as_one_number_or_text():
    assert bundle_overrides({"patch_size": 32}) == {"patch_size": [32, 32, 32]}
    assert bundle_overrides({"patch_size": "96, 96, 64"}) == {"patch_size": [96, 96, 64]}
    with pytest.raises(InvalidRequest, match="training option"):
        bundle_overrides({"patch_size": "96,x,64"})


def test_train_stats_follow_the_epochs_and_stay_after_the_run(tmp_path):
    path = str(tmp_path / "models" / "train_stats.json")
    evaluator = Engine(lambda e, b: None)
    evaluator.state.best_metric = -1  # MONAI's value before any validation
    trainer = Engine(lambda e, b: {"loss": torch.tensor(0.5)})
    TrainStatsWriter(path, evaluator).attach(trainer)
    seen = []

    def validate(engine):
        evaluator.state.best_metric = 0.25 * engine.state.epoch
        evaluator.state.best_metric_epoch = engine.state.epoch

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)  # before the writer's next epoch
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(read_train_stats(path)))
    trainer.add_event_handler(Events.STARTED, lambda e: seen.append(read_train_stats(path)))
    trainer.run([0, 1], max_epochs=3)

    assert [s["epoch"] for s in seen] == [0, 1, 2, 3]
    assert {s["total_epochs"] for s in seen} == {3}
    assert seen[0]["best_metric"] == 0  # no validation yet: an empty accuracy bar, never -1
    assert "current_time" in seen[1] and "total_time" not in seen[1]
    final = read_train_stats(path)
    assert final["epoch"] == 3 and final["total_time"] and final["best_metric"] == 0.75
    assert final["train_loss"] == 0.5 and final["eval"]["best_metric_epoch"] == 3
    assert not [f for f in os.listdir(tmp_path / "models") if ".tmp" in f]  # written aside, then renamed
