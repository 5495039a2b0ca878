"""The app's parts that need no store: bundle copy, options, training overrides, versions, cache."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tiledb
import torch

from monailabel_app.lib.bundle import MODEL_FILE, ORIGIN_FILE, find_bundle, prepare_bundle
from monailabel_app.lib.cache import NiftiCache
from monailabel_app.lib.conf import AppConf
from monailabel_app.lib.errors import InvalidRequest
from monailabel_app.lib.train import bundle_overrides
from radiobject_adapter.store.label_versions import fragment_timestamps, list_versions, next_timestamp, write_version

BUNDLE = "ct_segmentation_3d"


@pytest.fixture
def source_bundle(tmp_path) -> str:
    """A copy of the repository bundle without trained weights."""
    src = find_bundle(BUNDLE, app_dir=str(tmp_path))
    dst = tmp_path / "src" / BUNDLE
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.pt", "*.ts", "runs", "eval"))
    return str(dst)


def test_bundle_copy_starts_from_initial_weights_and_keeps_its_training(source_bundle, tmp_path):
    target = prepare_bundle(source_bundle, str(tmp_path / "ws"))
    model = os.path.join(target, "models", MODEL_FILE)
    with open(os.path.join(target, "models", ORIGIN_FILE)) as fh:
        assert json.load(fh)["origin"].startswith("initial weights")
    state = torch.load(model, map_location="cpu")
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    torch.save({k: v + 1 for k, v in state.items()}, model)  # as if fine-tuned
    with open(os.path.join(source_bundle, "configs", "metadata.json")) as fh:
        meta = json.load(fh)
    meta["version"] = "9.9.9"
    with open(os.path.join(source_bundle, "configs", "metadata.json"), "w") as fh:
        json.dump(meta, fh)
    prepare_bundle(source_bundle, str(tmp_path / "ws"))  # the next start
    with open(os.path.join(target, "configs", "metadata.json")) as fh:
        assert json.load(fh)["version"] == "9.9.9"  # configs follow the repository
    reloaded = torch.load(model, map_location="cpu")
    assert all(torch.equal(reloaded[k], state[k] + 1) for k in state)  # the fine-tuned weights stay


def test_bundle_copy_starts_from_the_bundle_checkpoint_when_there_is_one(source_bundle, tmp_path):
    torch.save({"w": torch.ones(2)}, os.path.join(source_bundle, "models", MODEL_FILE))
    target = prepare_bundle(source_bundle, str(tmp_path / "ws"))
    assert torch.equal(torch.load(os.path.join(target, "models", MODEL_FILE))["w"], torch.ones(2))


def test_unknown_bundles_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"bundle 'nope' not found .*--conf bundles_dir"):
        find_bundle("nope", app_dir=str(tmp_path))
    with pytest.raises(ValueError, match="invalid bundle name"):
        find_bundle("../bundles", app_dir=str(tmp_path))


def test_options_default_to_a_workspace_per_studies(tmp_path):
    conf = AppConf.from_conf(str(tmp_path / "app"), "/data/store_a", {})
    other = AppConf.from_conf(str(tmp_path / "app"), "/data/store_b", {})
    assert conf.models == ("ct_segmentation_3d",) and conf.image_collection == "CT"
    assert conf.workspace != other.workspace and conf.workspace.startswith(str(tmp_path / "app" / "workspace"))
    assert conf.tracking_uri == f"sqlite:///{conf.workspace}/mlflow.db"
    with pytest.raises(ValueError, match="bad --conf value"):
        AppConf.from_conf(str(tmp_path), "/data/s", {"epistemic_samples": "many"})


def test_training_options_are_checked_numbers_never_expressions():
    request = {"patch_size": [32, 32, 32], "num_workers": 0, "learning_rate": 1e-3, "max_epochs": 3, "other": "x"}
    assert bundle_overrides(request) == {"patch_size": [32, 32, 32], "num_workers": 0, "learning_rate": 1e-3}
    for bad in (
        {"patch_size": "$__import__('os').system('true')"},
        {"patch_size": [32, 32]},
        {"batch_size": 0},
        {"batch_size": 1.5},
        {"learning_rate": "1e-3"},
        {"cache_rate": True},
    ):
        with pytest.raises(InvalidRequest, match="training option"):
            bundle_overrides(bad)


def test_version_timestamps_strictly_increase_and_never_lie_in_the_future(tmp_path):
    uri = str(tmp_path / "label")
    dom = tiledb.Domain(tiledb.Dim("x", (0, 3), tile=4, dtype=np.int32))
    tiledb.Array.create(uri, tiledb.ArraySchema(domain=dom, attrs=[tiledb.Attr("voxels", dtype=np.uint8)]))
    stamps = [write_version(uri, np.full(4, i, np.uint8), {"tag": "final", "annotator": f"a{i}"}) for i in range(5)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert fragment_timestamps(uri) == stamps
    assert [v.annotator for v in list_versions(uri)] == [f"a{i}" for i in range(5)]
    assert next_timestamp(stamps[-1]) > stamps[-1]


def test_cache_keeps_the_two_newest_versions_of_a_volume(tmp_path):
    cache = NiftiCache(str(tmp_path))

    def writer(text):
        return lambda path: open(path, "w").write(text)

    paths = [cache.get("images", "uri", v, "a.nii.gz", writer(str(v))) for v in (1, 2, 3)]
    assert [os.path.exists(p) for p in paths] == [False, True, True]
    assert cache.get("images", "uri", 3, "a.nii.gz", writer("never called")) == paths[2]
    assert cache.checksum(paths[2]).startswith("SHA256:")


FOUR = ["background", "liver", "tumour", "cyst"]


def _out_channels(state: dict) -> int:
    last = [k for k in state if k.endswith(".weight")][-1]  # the final (transposed) convolution
    return int(state[last].shape[1])


def test_bundle_copy_serves_the_store_classes(source_bundle, tmp_path):
    target = prepare_bundle(source_bundle, str(tmp_path / "ws"), class_names=FOUR)
    with open(os.path.join(target, "configs", "metadata.json")) as fh:
        pred = json.load(fh)["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 4 and pred["channel_def"] == {str(i): n for i, n in enumerate(FOUR)}
    for name in ("train.json", "inference.json"):
        with open(os.path.join(target, "configs", name)) as fh:
            assert json.load(fh)["class_names"] == FOUR
    assert _out_channels(torch.load(os.path.join(target, "models", MODEL_FILE))) == 4


def test_a_given_checkpoint_is_served_once_per_version_and_fine_tuning_is_kept(source_bundle, tmp_path):
    first = prepare_bundle(source_bundle, str(tmp_path / "ws0"), class_names=FOUR)
    given = str(tmp_path / "demo_model.pt")
    trained = {k: v + 0.5 for k, v in torch.load(os.path.join(first, "models", MODEL_FILE)).items()}
    torch.save(trained, given)

    target = prepare_bundle(source_bundle, str(tmp_path / "ws"), class_names=FOUR, model=given)
    served = os.path.join(target, "models", MODEL_FILE)
    assert all(torch.equal(torch.load(served)[k], trained[k]) for k in trained)
    torch.save({k: v + 1 for k, v in trained.items()}, served)  # fine-tuned in the app
    prepare_bundle(source_bundle, str(tmp_path / "ws"), class_names=FOUR, model=given)  # next start
    assert all(torch.equal(torch.load(served)[k], trained[k] + 1) for k in trained)

    torch.save({k: v - 1 for k, v in trained.items()}, given)  # a new demo run
    os.utime(given, ns=(os.stat(given).st_atime_ns, os.stat(given).st_mtime_ns + 10**9))
    prepare_bundle(source_bundle, str(tmp_path / "ws"), class_names=FOUR, model=given)
    assert all(torch.equal(torch.load(served)[k], trained[k] - 1) for k in trained)


def test_a_given_checkpoint_for_other_classes_is_refused_by_name(source_bundle, tmp_path):
    three = prepare_bundle(source_bundle, str(tmp_path / "ws3"))
    with pytest.raises(ValueError, match=r"does not fit .*4 classes \['background', 'liver', 'tumour', 'cyst'\]"):
        prepare_bundle(
            source_bundle, str(tmp_path / "ws"), class_names=FOUR, model=os.path.join(three, "models", MODEL_FILE)
        )


def _set_norm(bundle: str, norm: str) -> None:
    """Change the network of a bundle's configs, as an upgrade of the bundle does (0.2.0: batch norm)."""
    for name in ("train.json", "inference.json"):
        path = os.path.join(bundle, "configs", name)
        with open(path) as fh:
            config = json.load(fh)
        config["network_def"]["norm"] = norm
        with open(path, "w") as fh:
            json.dump(config, fh, indent=4)


def test_a_trained_model_the_upgraded_network_cannot_load_is_set_aside_not_overwritten(source_bundle, tmp_path):
    _set_norm(source_bundle, "instance")  # the network before the upgrade (no norm weights)
    target = prepare_bundle(source_bundle, str(tmp_path / "ws"))
    served = os.path.join(target, "models", MODEL_FILE)
    trained = {k: v + 1 for k, v in torch.load(served).items()}
    torch.save(trained, served)  # fine-tuned in the app

    _set_norm(source_bundle, "batch")  # the upgrade
    prepare_bundle(source_bundle, str(tmp_path / "ws"))
    (aside,) = [f for f in os.listdir(os.path.join(target, "models")) if f.startswith("model.set-aside-")]
    kept = torch.load(os.path.join(target, "models", aside))
    assert kept.keys() == trained.keys() and all(torch.equal(kept[k], trained[k]) for k in trained)
    with open(os.path.join(target, "models", ORIGIN_FILE)) as fh:
        origin = json.load(fh)
    assert origin["origin"].startswith("initial weights")
    assert origin["previous_model"]["path"].endswith(aside) and "does not load" in origin["previous_model"]["why"]
    state = torch.load(served)
    assert any("running_mean" in k for k in state)  # the new seed is the batch-norm network's


def test_untrained_seed_weights_for_other_classes_are_replaced_without_a_copy(source_bundle, tmp_path):
    target = prepare_bundle(source_bundle, str(tmp_path / "ws"))
    prepare_bundle(source_bundle, str(tmp_path / "ws"), class_names=FOUR)  # the store's classes changed
    assert _out_channels(torch.load(os.path.join(target, "models", MODEL_FILE))) == 4
    assert not [f for f in os.listdir(os.path.join(target, "models")) if f.startswith("model.set-aside-")]


def test_the_fit_check_runs_once_per_model_file_and_config(source_bundle, tmp_path, monkeypatch):
    import monailabel_app.lib.bundle as bundle_module

    checks = []
    real = bundle_module._misfit
    monkeypatch.setattr(bundle_module, "_misfit", lambda b, p: checks.append(p) or real(b, p))
    target = prepare_bundle(source_bundle, str(tmp_path / "ws"))  # seeded for this network: no check
    prepare_bundle(source_bundle, str(tmp_path / "ws"))
    assert checks == []
    served = os.path.join(target, "models", MODEL_FILE)
    torch.save({k: v + 1 for k, v in torch.load(served).items()}, served)  # training wrote a new model
    prepare_bundle(source_bundle, str(tmp_path / "ws"))
    prepare_bundle(source_bundle, str(tmp_path / "ws"))
    assert checks == [served]
