"""The ``mri_classification_3d`` bundle: its scripts, its zoo form, and (slow) a real train /
evaluate / inference run by ``python -m monai.bundle run`` from a copy of the bundle folder.

The bundle's code is its own ``scripts`` package (Model Zoo layout); tests import it within
``radiobundles.resources.bundle_scripts`` (bundle folder on ``sys.path``, taken out of
``sys.modules`` again afterwards), so other bundles' ``scripts`` packages are not shadowed.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from radiobject_adapter import RadiObject, ingest_niftis
from radiobundles.resources import bundle_scripts

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "mri_classification_3d"
CONFIGS = BUNDLE / "configs"
COLLECTIONS = ("T1w", "FLAIR")
# bundle runs take a few CPU minutes (about 4 for the trained fixture and its tests); on a busy
# shared machine their wall time is a multiple of that
E2E_TIMEOUT = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def bundle() -> Iterator[types.SimpleNamespace]:
    """The bundle's ``scripts`` modules, imported from the bundle folder."""
    with bundle_scripts(BUNDLE):
        mods = {n: importlib.import_module(f"scripts.{n}") for n in ("data", "metrics", "report", "synthetic")}
        yield types.SimpleNamespace(**mods)


@pytest.fixture(scope="module")
def small_data(bundle, tmp_path_factory: pytest.TempPathFactory):
    """20 subjects, two collections, a NIfTI folder and the store ingested from it (no split column)."""
    root = tmp_path_factory.mktemp("cls_small")
    ds = bundle.synthetic.make_classification_dataset(
        str(root / "nifti"), n_subjects=20, collections=COLLECTIONS, shape_range=((20, 24), (20, 24), (16, 20)), seed=5
    )
    store = str(root / "store")
    report = ingest_niftis(store, {c: ds.folder(c) for c in COLLECTIONS}, obs_meta=ds.subjects_csv, progress=False)
    assert report.ok, report.summary()
    return ds, store


# -- classes, split, weights -------------------------------------------------------------------
def test_class_map_orders_names_and_refuses_another_mapping_on_resume(bundle, tmp_path) -> None:
    cm = bundle.data.ClassMap.from_values(["lesion", "healthy", "lesion", "", None, float("nan")])
    assert cm.class_names == ["healthy", "lesion"] and cm.index("lesion") == 1
    with pytest.raises(KeyError, match="'tumour' is not one of the model's classes"):
        cm.index("tumour")
    with pytest.raises(ValueError, match="trained for classes"):
        cm.load_state_dict({"class_names": ["lesion", "healthy"]})
    assert bundle.data.ClassMap.load(cm.save(tmp_path / "models" / "class_names.json")) == cm
    item = bundle.data.ClassIndexd("label", cm)({"label": "lesion", "image": 0})
    assert item["label"].dtype == torch.long and int(item["label"]) == 1


def test_seeded_split_is_stratified_disjoint_and_repeatable(bundle, small_data) -> None:
    ds, store = small_data
    data = bundle.data.ClassificationData(store, COLLECTIONS, val_fraction=0.25, test_fraction=0.25, seed=3)
    parts = {s: data.subjects(s) for s in ("train", "validation", "test")}
    assert sorted(s for ids in parts.values() for s in ids) == data.subjects("all") == sorted(ds.table.subject_id)
    labels = ds.table.set_index("subject_id").diagnosis
    for name, ids in parts.items():
        assert set(labels[ids]) == {"healthy", "lesion"}, name  # every class in every part
    again = bundle.data.ClassificationData(store, COLLECTIONS, val_fraction=0.25, test_fraction=0.25, seed=3)
    assert again.subjects("test") == parts["test"]
    other = bundle.data.ClassificationData(store, COLLECTIONS, val_fraction=0.25, test_fraction=0.25, seed=4)
    assert other.subjects("test") != parts["test"]


def test_the_tables_split_column_wins_and_bad_values_are_named(bundle, small_data, tmp_path) -> None:
    ds, _ = small_data
    table = ds.table.copy()
    table["split"] = ["test" if i < 5 else "train" for i in range(len(table))]
    csv = tmp_path / "subjects.csv"
    table.to_csv(csv, index=False)
    data = bundle.data.ClassificationData(ds.root, COLLECTIONS, subjects_csv=str(csv))
    assert data.subjects("test") == sorted(table.subject_id[:5]) and data.subjects("validation") == []
    table.loc[0, "split"] = "holdout"
    table.to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"values \['holdout'\]; use train / validation / test"):
        bundle.data.ClassificationData(ds.root, COLLECTIONS, subjects_csv=str(csv)).subjects("train")


def test_class_weights_are_inverse_class_frequencies(bundle, small_data) -> None:
    _, store = small_data
    data = bundle.data.ClassificationData(store, COLLECTIONS, val_fraction=0.0)
    labels = data.labels()
    counts = np.array([(labels == n).sum() for n in data.class_map.class_names])
    weights = data.class_weights("train").numpy()
    assert counts[0] != counts[1]  # the synthetic data are imbalanced
    np.testing.assert_allclose(weights * counts, (weights * counts)[0], rtol=1e-6)  # equal total weight per class
    assert weights.mean() == pytest.approx(1.0)


def test_label_problems_get_clear_errors(bundle, small_data) -> None:
    _, store = small_data
    with pytest.raises(KeyError, match=r"no column 'grade'.*--label_column"):
        _ = bundle.data.ClassificationData(store, COLLECTIONS, label_column="grade").class_map
    with pytest.raises(ValueError, match=r"has 2 classes.*--num_classes 2"):
        _ = bundle.data.ClassificationData(store, COLLECTIONS, num_classes=3).class_map
    with pytest.raises(ValueError, match=r"labels \['lesion'\] are not among class_names"):
        _ = bundle.data.ClassificationData(store, COLLECTIONS, class_names=["healthy", "other"]).class_map
    with pytest.raises(ValueError, match="no collection"):
        _ = bundle.data.ClassificationData(store, ["T2w"]).table


# -- the two sources ----------------------------------------------------------------------------
def test_store_and_nifti_folder_give_the_same_subjects_labels_and_voxels(bundle, small_data) -> None:
    ds, store = small_data
    from_store = bundle.data.ClassificationData(store, COLLECTIONS, test_fraction=0.25)
    from_files = bundle.data.ClassificationData(ds.root, COLLECTIONS, test_fraction=0.25)
    assert from_store.is_store and not from_files.is_store
    assert from_store.subjects("test") == from_files.subjects("test")
    a = list(from_store.loader("test", batch_size=1))
    b = list(from_files.loader("test", batch_size=1))
    assert [x["subject_id"] for x in a] == [x["subject_id"] for x in b] == [[s] for s in from_store.subjects("test")]
    for x, y in zip(a, b):
        assert x["label"] == y["label"]
        assert x["image"].shape[1] == len(COLLECTIONS)  # collections stacked as channels
        np.testing.assert_allclose(np.asarray(x["image"]), np.asarray(y["image"]), rtol=1e-6)
        np.testing.assert_allclose(x["image"].affine, y["image"].affine, atol=1e-5)


# -- metrics ------------------------------------------------------------------------------------
def test_metrics_match_scikit_learn_on_three_classes(bundle) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60) + np.eye(3)[labels] * rng.uniform(0, 0.8, (60, 1))
    probs /= probs.sum(axis=1, keepdims=True)
    m = bundle.metrics.classification_metrics(probs, labels)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(labels, probs.argmax(1)))
    assert m["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(labels, probs.argmax(1)))
    assert m["auc"] == pytest.approx(metrics.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    np.testing.assert_array_equal(m["confusion_matrix"], metrics.confusion_matrix(labels, probs.argmax(1)))


def test_report_writes_metric_csvs_and_a_confusion_matrix_png(bundle, tmp_path) -> None:
    from ignite.engine import Engine

    cm = bundle.data.ClassMap(["a", "b", "c"])
    report = bundle.report.ClassificationReport(str(tmp_path), cm)
    engine = Engine(lambda e, b: None)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    engine.state.output = [{"pred": p, "label": torch.tensor(i)} for p, i in zip(probs, [0, 1, 2, 1])]
    engine.state.batch = [{"subject_id": f"s{i}"} for i in range(4)]
    report.collect(engine)
    report.completed(engine)
    values = pd.read_csv(tmp_path / "metrics.csv").set_index("metric")["value"]
    assert float(values["accuracy"]) == 0.75 and float(values["balanced_accuracy"]) == pytest.approx((1 + 0.5 + 1) / 3)
    assert float(values["majority_baseline_accuracy"]) == 0.5 and values["majority_class"] == "b"
    matrix = pd.read_csv(tmp_path / "confusion_matrix.csv").set_index("class")
    assert matrix.loc["true_b", "pred_a"] == 1 and int(np.trace(matrix.to_numpy())) == 3
    png = (tmp_path / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert list(pd.read_csv(tmp_path / "predictions.csv").predicted) == ["a", "b", "c", "a"]


# -- zoo form -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.json")))
def test_configs_are_four_space_json_with_key_order_kept(name: str) -> None:
    text = (CONFIGS / name).read_text()
    assert text == json.dumps(json.loads(text), indent=4) + "\n"


def test_metadata_has_version_in_changelog_and_declares_our_package() -> None:
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert "radiobundles" in meta["required_packages_version"]
    image = meta["network_data_format"]["inputs"]["image"]
    assert {"num_channels", "spatial_shape", "dtype"} <= set(image)
    assert "pred" in meta["network_data_format"]["outputs"]
    for name in ("LICENSE", "large_files.yml", "docs/README.md", "scripts/__init__.py"):
        assert (BUNDLE / name).is_file(), name
    readme = (BUNDLE / "docs" / "README.md").read_text()
    for section in ("Model Overview", "Data", "Training configuration", "Input", "Output", "Performance"):
        assert re.search(rf"^#+ {section}$", readme, re.MULTILINE), section
    assert "TorchScript" in readme


def _bundle_env() -> dict[str, str]:
    repo = str(BUNDLE.parents[1])
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    return env


def _monai_bundle(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=cwd,
        env=_bundle_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
@E2E_TIMEOUT
def test_verify_net_in_out_and_ckpt_export_pass_with_monais_defaults(tmp_path) -> None:
    """What the zoo's ``ci/verify_bundle.py`` runs (full mode), from a copy of the bundle folder.

    ``verify_net_in_out`` with the same arguments runs for every bundle in
    ``tests/bundles/test_zoo_conformance.py`` (``[mri_classification_3d]``); this test runs
    ``ckpt_export`` from the zoo's fake weights and calls the exported network.
    """
    from monai.bundle import ConfigParser

    copy = tmp_path / "mri_classification_3d"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("eval", "runs", "*.pt", "*.ts"))
    # the zoo's _produce_fake_weights: the network's initial state dict as models/model.pt (network_def
    # needs none of the bundle's scripts, so this runs here rather than in a second fresh interpreter)
    parser = ConfigParser()
    parser.read_config(str(copy / "configs" / "inference.json"))
    parser.read_meta(str(copy / "configs" / "metadata.json"))
    (copy / "models").mkdir(exist_ok=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), copy / "models" / "model.pt")
    _monai_bundle(
        [
            "ckpt_export", "network_def", "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
            "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json",
        ],
        copy,
    )  # fmt: skip
    ts = torch.jit.load(str(copy / "models" / "model.ts"))
    assert ts(torch.rand(1, 1, 32, 32, 32)).shape == (1, 2)


# -- end to end -------------------------------------------------------------------------------
# DenseNet121 with fewer and narrower dense layers and 32³ inputs: the same code path as the
# default network, a few CPU minutes for the whole run
SMALL = [
    "--collections", json.dumps(list(COLLECTIONS)), "--spatial_size", "[32,32,32]", "--num_workers", "0",
    "--network_def#init_features", "8", "--network_def#growth_rate", "8", "--network_def#block_config", "[1,2,2,2]",
    "--gradcam_layer", "features.denseblock2",  # a 4³ map at 32³ inputs (class_layers.relu is 1³ there)
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(bundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A store of 120 small subjects (split column 45/15/40 %: 48 held out), the bundle copied alone, trained there.

    ``RB_CLS_SEED`` picks another data seed (the README reports several).
    """
    root = tmp_path_factory.mktemp("cls_e2e")
    ds = bundle.synthetic.make_classification_dataset(
        str(root / "nifti"), n_subjects=120, collections=COLLECTIONS, split_column="split",
        split_fractions=(0.45, 0.15, 0.4), shape_range=((24, 32), (24, 32), (20, 28)),
        seed=int(os.environ.get("RB_CLS_SEED", "0")),
    )  # fmt: skip
    store = str(root / "store")
    assert ingest_niftis(store, {c: ds.folder(c) for c in COLLECTIONS}, obs_meta=ds.subjects_csv, progress=False).ok
    copy = root / "mri_classification_3d"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("eval", "runs", "*.pt", "*.ts", "__pycache__"))
    epochs = 10
    train = _monai_bundle(
        ["run", "--config_file", "configs/train.json", "--dataset_dir", store, "--max_epochs", str(epochs),
         "--learning_rate", "0.002", "--batch_size", "4", *SMALL],
        copy, timeout=1100,
    )  # fmt: skip
    return {"data": ds, "store": store, "bundle": copy, "epochs": epochs, "train_log": train.stdout + train.stderr}


@pytest.mark.slow
@E2E_TIMEOUT
def test_training_writes_model_class_map_checkpoints_and_tensorboard(trained) -> None:
    models = trained["bundle"] / "models"
    assert {"model.pt", "best.pt", "last.pt", "class_names.json"} <= set(os.listdir(models))
    assert json.loads((models / "class_names.json").read_text()) == {"class_names": ["healthy", "lesion"]}
    last = torch.load(models / "last.pt", weights_only=True)
    assert last["extra"]["class_map"] == {"class_names": ["healthy", "lesion"]}  # the mapping travels with it
    assert last["metric_name"] == "val_balanced_accuracy" and 1 <= last["epoch"] <= trained["epochs"]
    assert list((trained["bundle"] / "runs").glob("events.out.tfevents.*"))


@pytest.mark.slow
@E2E_TIMEOUT
def test_evaluation_beats_the_majority_baseline_beyond_chance_and_writes_its_files(trained) -> None:
    stats = pytest.importorskip("scipy.stats")
    copy, store = trained["bundle"], trained["store"]
    _monai_bundle(
        ["run", "--config_file", "['configs/train.json','configs/evaluate.json']", "--dataset_dir", store, *SMALL], copy
    )
    out = copy / "eval"
    values = pd.read_csv(out / "metrics.csv").set_index("metric")["value"]
    table = trained["data"].table
    test_ids = sorted(table.subject_id[table.split == "test"])
    predictions = pd.read_csv(out / "predictions.csv")
    assert sorted(predictions.subject_id) == test_ids  # held-out subjects only, each once
    n = len(test_ids)
    correct = int((predictions.true == predictions.predicted).sum())
    majority = float(values["majority_baseline_accuracy"])
    p_value = stats.binomtest(correct, n, majority, alternative="greater").pvalue
    print(
        f"held-out n={n}: accuracy {float(values['accuracy']):.3f} vs majority {majority:.3f} (p={p_value:.2g}), "
        f"balanced accuracy {float(values['balanced_accuracy']):.3f} vs 0.5, AUC {float(values['auc_one_vs_rest']):.3f}"
    )
    assert p_value < 0.01, f"{correct}/{n} correct is not clearly above the majority rate {majority:.2f}"
    assert float(values["balanced_accuracy"]) >= 0.7
    assert float(values["accuracy"]) == pytest.approx(correct / n)
    matrix = pd.read_csv(out / "confusion_matrix.csv").set_index("class")
    assert int(matrix.to_numpy().sum()) == n
    pngs = [out / "confusion_matrix.png", *sorted((out / "gradcam").glob("gradcam_*.png"))]
    assert len(pngs) == 5
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, png


@pytest.mark.slow
@E2E_TIMEOUT
def test_inference_writes_probabilities_to_csv_and_into_the_subject_table_only_as_new_columns(trained) -> None:
    copy, store, ds = trained["bundle"], trained["store"], trained["data"]
    before = RadiObject(store).obs_meta
    _monai_bundle(["run", "--config_file", "configs/inference.json", "--dataset_dir", store,
                   "--write_to_store", "true", "--output_dir", "pred_store", *SMALL], copy)  # fmt: skip
    predictions = pd.read_csv(copy / "pred_store" / "predictions.csv").set_index("subject_id")
    assert sorted(predictions.index) == sorted(ds.table.subject_id)
    np.testing.assert_allclose(predictions[["prob_healthy", "prob_lesion"]].sum(axis=1), 1.0, rtol=1e-5)
    after = RadiObject(store).obs_meta
    new = ["pred_diagnosis", "prob_diagnosis_healthy", "prob_diagnosis_lesion"]
    assert list(after.columns) == [*before.columns, *new]
    # nothing else in the table changed (obs_meta is a Table, a DataFrame subclass: compare plain frames)
    pd.testing.assert_frame_equal(pd.DataFrame(after[before.columns]), pd.DataFrame(before))
    rows = after.set_index("obs_subject_id")
    np.testing.assert_allclose(rows.loc[predictions.index, "prob_diagnosis_lesion"], predictions.prob_lesion, rtol=1e-6)
    # the same model on the NIfTI folder (no store): the same probabilities
    _monai_bundle(["run", "--config_file", "configs/inference.json", "--dataset_dir", ds.root,
                   "--output_dir", "pred_nifti", *SMALL], copy)  # fmt: skip
    from_files = pd.read_csv(copy / "pred_nifti" / "predictions.csv").set_index("subject_id")
    np.testing.assert_allclose(from_files.loc[predictions.index, "prob_lesion"], predictions.prob_lesion, atol=1e-4)


@pytest.mark.slow
@E2E_TIMEOUT
def test_the_multi_gpu_config_trains_with_two_cpu_processes(small_data, tmp_path) -> None:
    _, store = small_data
    copy = tmp_path / "mri_classification_3d"
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("eval", "runs", "*.pt", "*.ts", "__pycache__"))
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "monai.bundle", "run",
            "--config_file", "['configs/train.json','configs/multi_gpu_train.json']", "--dataset_dir", store,
            "--max_epochs", "1", "--batch_size", "2", *SMALL,
        ],
        cwd=copy, env=_bundle_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "val_balanced_accuracy" in proc.stdout + proc.stderr
    assert {"best.pt", "last.pt", "model.pt", "class_names.json"} <= set(os.listdir(copy / "models"))
    assert torch.load(copy / "models" / "last.pt", weights_only=True)["epoch"] == 1
