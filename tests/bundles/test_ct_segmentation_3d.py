"""The ``ct_segmentation_3d`` bundle end to end on tiny synthetic CT: store and NIfTI folder.

Training, evaluation and inference run through MONAI's bundle machinery: in-process through
``ConfigWorkflow`` (what ``python -m monai.bundle run`` builds), the NIfTI-folder training and the
2-process ``torchrun`` run as real command lines. ``verify_net_in_out`` and ``ckpt_export`` are
MONAI's own functions.
"""

from __future__ import annotations

import csv
import glob
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from radiobject_adapter import RadiObject, TileDBDataset
from radiobundles.datalists import make_datalist
from radiobundles.labels import class_names_for
from radiobundles.resources import bundle_environ, bundle_scripts

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_segmentation_3d"
CONFIGS = BUNDLE / "configs"
TRAIN, EVALUATE, INFERENCE, MULTI_GPU, METADATA = (
    str(CONFIGS / f"{n}.json") for n in ("train", "evaluate", "inference", "multi_gpu_train", "metadata")
)

# a network small enough for 16^3 patches (two down-samplings leave 4^3 for instance norm)
TINY_NET = {"network_def#channels": [8, 16, 32], "network_def#strides": [2, 2], "network_def#num_res_units": 1}
TINY = {
    **TINY_NET,
    "patch_size": [16, 16, 16],
    "num_workers": 0,
    "sw_batch_size": 16,
    "sw_overlap": 0.25,
    "device": "cpu",
}
TINY_TRAIN = {**TINY, "max_epochs": 1, "batch_size": 2, "patches_per_volume": 2, "val_fraction": 0.34}


def workflow(config_file, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(config_file=config_file, meta_file=METADATA, logging_file=False, **overrides)
    wf.initialize()
    return wf


def run(wf: ConfigWorkflow) -> ConfigWorkflow:
    try:
        wf.run()
    finally:
        wf.finalize()
    return wf


def outputs(root: Path) -> dict[str, str]:
    return {"ckpt_dir": str(root / "models"), "log_dir": str(root / "runs"), "output_dir": str(root / "eval")}


def event_tags(log_dir: str) -> dict[str, list[str]]:
    files = glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = EventAccumulator(files[0], size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc.Tags()


@pytest.fixture(scope="module", autouse=True)
def scripts():
    """The bundle's own ``scripts`` package: what its configs' ``scripts.…`` name in this process."""
    with bundle_scripts(BUNDLE) as package:
        yield package


@pytest.fixture(scope="module")
def store(ct_store, tmp_path_factory) -> str:
    """A private copy: inference writes a collection into it."""
    return str(shutil.copytree(ct_store, tmp_path_factory.mktemp("ct3d_bundle") / "store"))


@pytest.fixture(scope="module")
def trained_on_store(store, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ct3d_store_run")
    wf = workflow(TRAIN, dataset_dir=store, **TINY_TRAIN, **outputs(root))
    dataset = wf.parser.get_parsed_content("train#dataset")
    run(wf)
    return {"root": root, "dataset": dataset, "store": store, **outputs(root)}


@pytest.mark.slow
def test_store_training_reads_patches_and_logs_checkpoint_and_tensorboard(trained_on_store):
    dataset = trained_on_store["dataset"]
    PatchesPerSubject = importlib.import_module("scripts.datasets").PatchesPerSubject
    assert isinstance(dataset, PatchesPerSubject) and isinstance(dataset.dataset, TileDBDataset)
    assert dataset.dataset.foreground_sampling
    assert os.path.isfile(os.path.join(trained_on_store["ckpt_dir"], "model.pt"))
    # the metadata beside the weights names the classes this run trained (the store's), for ckpt_export
    with open(os.path.join(trained_on_store["ckpt_dir"], "metadata.json")) as fh:
        pred = json.load(fh)["network_data_format"]["outputs"]["pred"]
    default = ConfigParser.load_config_file(TRAIN)["default_class_names"]
    classes = class_names_for(trained_on_store["store"], "seg", default)
    assert pred["num_channels"] == len(classes) and list(pred["channel_def"].values()) == classes
    tags = event_tags(trained_on_store["log_dir"])
    assert {"train_loss", "val_mean_dice", "epoch/lr", "epoch/train_loss"} <= set(tags["scalars"])
    assert "val/image_label_pred" in tags["images"]


@pytest.mark.slow
def test_evaluate_writes_dice_and_hd95_per_subject_and_class(trained_on_store, store):
    wf = run(
        workflow([TRAIN, EVALUATE], dataset_dir=store, **TINY, val_fraction=0.34, **outputs(trained_on_store["root"]))
    )
    validation = make_datalist(store, split="validation", val_fraction=0.34)
    with open(os.path.join(trained_on_store["output_dir"], "metrics_per_subject.csv")) as fh:
        rows = list(csv.DictReader(fh))
    expected = [(it["subject_id"], name) for it in validation for name in ("structure_1", "structure_2")]
    assert [(r["subject_id"], r["class_name"]) for r in rows] == expected
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows if r["dice"] != "nan")
    summary = json.loads(Path(trained_on_store["output_dir"], "metrics_summary.json").read_text())
    assert summary["subjects"] == len(validation)
    assert wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"] >= 0.0


@pytest.mark.slow
def test_inference_on_store_writes_niftis_on_the_source_grid_and_a_collection(trained_on_store, store):
    out = trained_on_store["root"] / "predictions"
    overrides = {**TINY, "split": "validation", "val_fraction": 0.34, "pred_collection": "pred"}
    run(workflow(INFERENCE, dataset_dir=store, ckpt_dir=trained_on_store["ckpt_dir"], output_dir=str(out), **overrides))
    radi = RadiObject(store)
    subjects = [it["subject_id"] for it in make_datalist(store, split="validation", val_fraction=0.34)]
    assert sorted(p.name for p in out.iterdir()) == [f"{s}_seg.nii.gz" for s in subjects]
    for sid in subjects:
        nifti = nib.load(out / f"{sid}_seg.nii.gz")
        assert nifti.shape == radi.CT[sid].shape
        assert np.allclose(nifti.affine, radi.CT[sid].affine, atol=1e-5)
        assert np.array_equal(np.asanyarray(nifti.dataobj), radi.pred[sid].to_numpy())
        assert set(np.unique(radi.pred[sid].to_numpy())) <= {0, 1, 2}


@pytest.mark.slow
@pytest.mark.integration
def test_nifti_folder_runs_train_evaluate_inference_with_the_same_configs(synthetic_ct, tmp_path):
    """The command line of the issue, on a NIfTI folder: only the dataset behind the config changes."""
    overrides = {**TINY_TRAIN, "train#trainer#max_epochs": 1, **outputs(tmp_path)}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", TRAIN, "--dataset_dir", synthetic_ct.root]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    env = bundle_environ(BUNDLE, {**os.environ, "TQDM_DISABLE": "1"})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.isfile(tmp_path / "models" / "model.pt")
    assert "val_mean_dice" in event_tags(str(tmp_path / "runs"))["scalars"]

    evaluation = workflow(
        [TRAIN, EVALUATE], dataset_dir=synthetic_ct.root, **TINY, val_fraction=0.34, **outputs(tmp_path)
    )
    assert type(evaluation.parser.get_parsed_content("train#dataset")).__name__ == "CacheDataset"
    run(evaluation)
    assert (tmp_path / "eval" / "metrics_per_subject.csv").is_file()

    out = tmp_path / "predictions"
    infer = {**TINY, "split": "validation", "val_fraction": 0.34, "ckpt_dir": str(tmp_path / "models")}
    run(workflow(INFERENCE, dataset_dir=synthetic_ct.root, output_dir=str(out), **infer))
    for item in make_datalist(synthetic_ct.root, split="validation", val_fraction=0.34):
        source = nib.load(item["image"])
        pred = nib.load(out / f"{item['subject_id']}_seg.nii.gz")
        assert pred.shape == source.shape
        assert np.allclose(pred.affine, source.affine, atol=1e-5)


@pytest.mark.slow
@pytest.mark.integration
def test_dataset_dir_naming_store_and_collection_trains_through_the_command_line(ct_store, tmp_path):
    """``--dataset_dir <store>::CT`` as the README documents it: MONAI's config parser leaves the
    address alone, so no probe of the store is needed to read it back."""
    overrides = {**TINY_TRAIN, "image_collection": "not_a_collection", **outputs(tmp_path)}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", TRAIN, "--dataset_dir", f"{ct_store}::CT"]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=bundle_environ(BUNDLE, {**os.environ, "TQDM_DISABLE": "1"}),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.isfile(tmp_path / "models" / "model.pt")
    # the old form reaches the bundle as the new one and names the same data
    expected = make_datalist(ct_store, split="train", val_fraction=0.34)
    for dataset_dir in (f"{ct_store}#CT", f"{ct_store}::CT"):
        wf = ConfigWorkflow(config_file=TRAIN, meta_file=METADATA, logging_file=False, dataset_dir=dataset_dir)
        wf.parser.update({"val_fraction": 0.34, "image_collection": "not_a_collection"})
        assert wf.parser.get_parsed_content("train#datalist") == expected


@pytest.mark.slow
def test_monai_label_overrides_drive_training_without_dataset_dir(store, tmp_path):
    """What MONAI Label's BundleTrainTask sets: datalists, max epochs, handlers, device, bundle_root."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    handlers = parser.get("train#handlers")
    assert isinstance(handlers, list)
    overrides = {
        **TINY_TRAIN,
        "dataset_dir": "/nonexistent",
        "bundle_root": str(tmp_path),
        "train#trainer#max_epochs": 1,
        "train#dataset#data": make_datalist(store, split="train", val_fraction=0.34),
        "validate#dataset#data": make_datalist(store, split="validation", val_fraction=0.34),
        "train#handlers": handlers,
        "device": torch.device("cpu"),
    }
    run(workflow(TRAIN, **overrides))
    assert (tmp_path / "models" / "model.pt").is_file()

    inference = ConfigParser()
    inference.read_config(INFERENCE)
    for key in ("network_def", "preprocessing", "postprocessing", "inferer"):
        assert key in inference, key


def test_train_and_inference_configs_agree_with_metadata():
    train, infer, meta = (ConfigParser.load_config_file(p) for p in (TRAIN, INFERENCE, METADATA))
    infer_net = {k: v for k, v in infer["network_def"].items() if k != "out_channels"}
    assert infer_net == {k: v for k, v in train["network_def"].items() if k != "out_channels"}
    for key in ("hu_window", "patch_size", "sw_roi_size", "sw_overlap", "sw_batch_size"):
        assert train[key] == infer[key], key
    assert train["validate"]["inferer"] == infer["inferer"]  # validation Dice measures what inference does
    channels = meta["network_data_format"]["outputs"]["pred"]
    assert train["default_class_names"] == infer["default_class_names"]
    assert train["class_names"] == infer["class_names"]  # both from the store, else the default
    assert channels["num_channels"] == len(train["default_class_names"])
    assert [channels["channel_def"][str(i)] for i in range(channels["num_channels"])] == train["default_class_names"]
    assert meta["version"] in meta["changelog"] and meta["schema"].endswith(".json")


@pytest.mark.slow
def test_verify_net_in_out_and_torchscript_export(trained_on_store, tmp_path):
    verify_net_in_out(net_id="network_def", meta_file=METADATA, config_file=INFERENCE, device="cpu", n=2)
    ts_path = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=os.path.join(trained_on_store["ckpt_dir"], "model.pt"),
        meta_file=METADATA,
        config_file=INFERENCE,
        **TINY_NET,
    )
    scripted = torch.jit.load(str(ts_path))
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update(TINY_NET)
    eager = parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(os.path.join(trained_on_store["ckpt_dir"], "model.pt")))
    eager.eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scripted(x), eager(x), atol=1e-5)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_epoch(store, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "monai.bundle", "run", "--config_file", f"['{TRAIN}','{MULTI_GPU}']", "--dataset_dir", store]
    for key, value in {**TINY_TRAIN, **outputs(tmp_path)}.items():
        if key != "device":  # the multi-GPU config picks cuda:<local rank> or the CPU itself
            cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    env = bundle_environ(BUNDLE, {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "models" / "model.pt").is_file()
    state = torch.load(tmp_path / "models" / "model.pt")
    assert not any(k.startswith("module.") for k in state)  # saved unwrapped from DDP
    assert "val_mean_dice" in event_tags(str(tmp_path / "runs"))["scalars"]  # one writer: rank 0
