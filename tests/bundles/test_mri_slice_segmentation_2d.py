"""Smoke and behaviour tests of the ``mri_slice_segmentation_2d`` bundle on tiny synthetic data.

The bundle runs in-process through MONAI's ``ConfigWorkflow`` (what ``python -m monai.bundle run``
uses); the command line itself and the multi-process config are exercised by the slow tests.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import CacheDataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from radiobject_adapter import RadiObject, ingest_niftis
from radiobject_adapter.synthetic import make_ct_dataset
from radiobundles.resources import bundle_environ, bundle_scripts
from radiobundles.training import BatchNormRecalibration

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "mri_slice_segmentation_2d"
CONFIGS = BUNDLE / "configs"
TRAIN, EVALUATE, INFERENCE = (str(CONFIGS / f"{n}.json") for n in ("train", "evaluate", "inference"))

# small enough for a CPU epoch in about a second: 3 training subjects x 8 slices of 32 x 32
TINY = {
    "slice_size": [32, 32],
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
    "num_workers": 0,
    "batch_size": 8,
    "volumes_per_batch": 2,
    "slices_per_volume": 4,
    "bn_recalibration_batches": 2,
    "val_fraction": 0.25,
    "log_every": 1,
}
TINY_INFER = {k: v for k, v in TINY.items() if k.startswith(("slice_size", "network_def", "num_workers"))}


@pytest.fixture(scope="module", autouse=True)
def scripts():
    """The bundle's own ``scripts`` package: what its configs' ``scripts.…`` name in this process."""
    with bundle_scripts(BUNDLE) as package:
        yield package


@pytest.fixture(scope="module")
def nifti_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("mri2d_nifti")
    ds = make_ct_dataset(str(root), n_subjects=4, shape_range=((32, 32), (32, 32), (8, 8)), n_classes=1, seed=11)
    return ds.root


@pytest.fixture(scope="module")
def axial_store(nifti_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("mri2d_store") / "store")
    images, labels = os.path.join(nifti_dir, "imagesTr"), os.path.join(nifti_dir, "labelsTr")
    assert ingest_niftis(uri, {"CT": images, "seg": labels}, tiling="axial", progress=False).ok
    return uri


def workflow(config_file, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=config_file, meta_file=str(CONFIGS / "metadata.json"), logging_file=False, **overrides
    )
    wf.initialize()
    return wf


def run_workflow(wf: ConfigWorkflow) -> ConfigWorkflow:
    try:
        wf.run()
    finally:
        wf.finalize()
    return wf


@pytest.fixture(scope="module")
def store_run(axial_store: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[ConfigWorkflow, Path]:
    """Two epochs from the axial store, a periodic checkpoint every epoch, keeping one."""
    root = tmp_path_factory.mktemp("mri2d_store_run")
    wf = workflow(
        TRAIN,
        bundle_root=str(root),
        dataset_dir=axial_store,
        max_epochs=2,
        checkpoint_interval=1,
        keep_periodic=1,
        **TINY,
    )
    return run_workflow(wf), root


@pytest.mark.slow
def test_training_from_an_axial_store_reads_single_slices(store_run):
    wf, _ = store_run
    parser = wf.parser
    assert parser.get_parsed_content("loading") == "slices"
    assert isinstance(
        parser.get_parsed_content("train#dataset"), importlib.import_module("scripts.dataset").AxialSliceDataset
    )
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2
    assert trainer.amp == torch.cuda.is_available()  # AMP only where a GPU is present


@pytest.mark.slow
def test_checkpoints_best_last_periodic_with_retention_and_the_model(store_run):
    _, root = store_run
    models = root / "models"
    # checkpoints after retention, and the training settings evaluate reads back
    assert sorted(os.listdir(models)) == [
        "best.pt",
        "last.pt",
        "model.pt",
        "periodic_0002.pt",
        "training_settings.json",
    ]
    last = torch.load(models / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "metric"} <= set(last)
    assert (last["epoch"], last["step"]) == (2, 6)
    assert last["metric_name"] == "val_mean_dice" and 0.0 <= last["metric"] <= 1.0
    assert "early_stopping" in last["extra"]
    best = torch.load(models / "best.pt", weights_only=True)
    model = torch.load(models / "model.pt", weights_only=True)
    assert all(torch.equal(model[k], best["model"][k]) for k in model)  # best weights restored at the end


@pytest.mark.slow
def test_validation_recalibrates_batchnorm_before_every_run(store_run):
    wf, _ = store_run
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    handlers = [h for h in wf.parser.get_parsed_content("validate#handlers") if isinstance(h, BatchNormRecalibration)]
    assert len(handlers) == 1 and handlers[0].calls == 2
    assert evaluator.has_event_handler(handlers[0], Events.STARTED)


@pytest.mark.slow
def test_tensorboard_has_scalars_histograms_and_image_triplets(store_run):
    _, root = store_run
    events = EventAccumulator(str(root / "runs"), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    times = {"iteration_time", "data_time"}
    batch = {"batch/loss", "batch/dice", "batch/lr", "batch/grad_norm"} | {f"batch/{t}" for t in times}
    epoch = {"epoch/train_loss", "epoch/train_dice", "epoch/lr", "epoch/grad_norm"} | {f"epoch/{t}" for t in times}
    assert batch | epoch | {"val_mean_dice"} <= set(tags["scalars"])
    assert len(events.Scalars("batch/loss")) == 6 and len(events.Scalars("val_mean_dice")) == 2
    assert any(t.startswith("params/") for t in tags["histograms"])
    assert any(t.startswith("grads/") for t in tags["histograms"])
    assert {"input_0_HW_0", "input_1_HW_0", "output_HW_0"} <= set(tags["images"])  # image / label / prediction
    image = events.Images("input_0_HW_0")[-1]
    assert (image.height, image.width) == (32, 32)


@pytest.mark.slow
def test_evaluate_reproduces_the_best_validation_dice(store_run, axial_store):
    _, root = store_run
    wf = run_workflow(workflow([TRAIN, EVALUATE], bundle_root=str(root), dataset_dir=axial_store, **TINY))
    dice = wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    best = torch.load(root / "models" / "best.pt", weights_only=True)
    assert dice == pytest.approx(best["best_metric"], abs=1e-6)
    assert (root / "eval" / "val_mean_dice_raw.csv").is_file()


@pytest.mark.slow
def test_evaluate_remembers_the_training_split_and_slice_size_and_names_the_class(store_run, axial_store):
    _, root = store_run
    settings = json.loads((root / "models" / "training_settings.json").read_text())
    assert settings["slice_size"] == [32, 32] and settings["val_fraction"] == 0.25
    not_remembered = {k: v for k, v in TINY.items() if k not in ("slice_size", "val_fraction")}
    wf = run_workflow(workflow([TRAIN, EVALUATE], bundle_root=str(root), dataset_dir=axial_store, **not_remembered))
    assert wf.parser.get_parsed_content("slice_size") == [32, 32]
    assert wf.parser.get_parsed_content("val_fraction") == 0.25
    dice = wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    best = torch.load(root / "models" / "best.pt", weights_only=True)
    assert dice == pytest.approx(best["best_metric"], abs=1e-6)
    header = (root / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()[0]
    assert "foreground" in header and "class0" not in header
    summary = (root / "eval" / "val_mean_dice_summary.csv").read_text()
    assert "foreground" in summary and "class0" not in summary


@pytest.mark.slow
@pytest.mark.parametrize("source", ["store", "nifti"])
def test_inference_writes_3d_segmentations_on_the_source_grid(store_run, source, axial_store, nifti_dir, tmp_path):
    _, root = store_run
    dataset_dir = axial_store if source == "store" else nifti_dir
    out = tmp_path / "pred"
    run_workflow(
        workflow(
            INFERENCE,
            bundle_root=str(root),
            dataset_dir=dataset_dir,
            output_dir=str(out),
            workflow_type="infer",
            **TINY_INFER,
        )
    )
    files = sorted(glob.glob(str(out / "*_seg.nii.gz")))
    assert len(files) == 4
    store = RadiObject(axial_store)
    for path in files:
        sid = "_".join(Path(path).name.split("_")[:2])
        seg = nib.load(path)
        assert seg.shape == (32, 32, 8)
        np.testing.assert_allclose(seg.affine, store.CT[sid].affine, atol=1e-5)
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}


@pytest.mark.slow
def test_training_from_a_nifti_folder_flattens_volume_batches(nifti_dir, tmp_path):
    wf = workflow(TRAIN, bundle_root=str(tmp_path), dataset_dir=nifti_dir, max_epochs=1, **TINY)
    parser = wf.parser
    assert parser.get_parsed_content("loading") == "volumes"
    assert isinstance(parser.get_parsed_content("train#dataset"), CacheDataset)
    shapes = []
    trainer = parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: shapes.append(tuple(e.state.output["image"].shape)))
    run_workflow(wf)
    # 3 training volumes, 2 per batch, 4 slices from each: [B*D, C, H, W]
    assert shapes == [(8, 1, 32, 32), (4, 1, 32, 32)]
    assert (tmp_path / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_training_resumes_from_last_by_one_override(axial_store, tmp_path):
    first = workflow(TRAIN, bundle_root=str(tmp_path), dataset_dir=axial_store, max_epochs=2, **TINY)

    def crash(engine):
        raise RuntimeError("simulated crash after epoch 1")

    first.parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_COMPLETED(once=1), crash)
    with pytest.raises(RuntimeError) as failure:
        run_workflow(first)
    assert "simulated crash" in repr(failure.value.__cause__)  # the bundle runner wraps it
    assert torch.load(tmp_path / "models" / "last.pt", weights_only=True)["epoch"] == 1

    second = workflow(TRAIN, bundle_root=str(tmp_path), dataset_dir=axial_store, max_epochs=2, resume=True, **TINY)
    trainer = second.parser.get_parsed_content("train#trainer")
    epochs = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append((e.state.epoch, e.state.iteration)))
    run_workflow(second)
    assert epochs == [(2, 3)]  # only the interrupted epoch ran, step count continued
    assert torch.load(tmp_path / "models" / "last.pt", weights_only=True)["step"] == 6


@pytest.mark.parametrize(
    ("loss", "kind"), [("dice", "DiceLoss"), ("cross_entropy", "CrossEntropySegLoss"), ("dice_ce", "DiceCELoss")]
)
def test_the_loss_is_chosen_by_one_override(loss, kind):
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({"loss": loss})
    assert type(parser.get_parsed_content("loss_function")).__name__ == kind
    if loss == "cross_entropy":
        assert isinstance(
            parser.get_parsed_content("loss_function"), importlib.import_module("scripts.losses").CrossEntropySegLoss
        )


BASIC_UNET = {
    "_target_": "BasicUNet",
    "spatial_dims": 2,
    "in_channels": "@in_channels",
    "out_channels": "@num_classes",
    "features": [8, 8, 16, 32, 64, 8],
    "norm": "batch",
}


@pytest.mark.parametrize("network", [None, BASIC_UNET], ids=["UNet", "BasicUNet"])
def test_the_network_is_a_2d_unet_with_batchnorm_for_binary_or_multiclass(network):
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({"num_classes": 3, **({"network_def": network} if network else {})})
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == (network or {"_target_": "UNet"})["_target_"]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def _split(dataset_dir: str, seed: int) -> tuple[set[str], set[str]]:
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update({"dataset_dir": dataset_dir, "val_fraction": 0.5, "seed": seed})
    train = {d["subject_id"] for d in parser.get_parsed_content("train#datalist")}
    val = {d["subject_id"] for d in parser.get_parsed_content("validate#datalist")}
    return train, val


def test_the_split_is_by_subject_reproducible_and_the_same_for_store_and_folder(axial_store, nifti_dir):
    train, val = _split(axial_store, seed=3)
    assert len(train) == len(val) == 2 and not train & val
    assert _split(axial_store, seed=3) == (train, val)
    assert _split(nifti_dir, seed=3) == (train, val)


def test_inference_uses_the_trained_network_and_preprocessing():
    train, infer = (json.loads(Path(p).read_text()) for p in (TRAIN, INFERENCE))
    assert train["network_def"] == infer["network_def"]
    for key in ("num_classes", "in_channels", "slice_size", "intensity_window"):
        assert train[key] == infer[key], key


def test_metadata_pins_versions_and_describes_the_network_io():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert {"schema", "version", "changelog"} <= set(meta) and meta["version"] in meta["changelog"]
    assert (meta["monai_version"], meta["pytorch_version"]) == ("1.6.1", "2.14.1")  # torch with py3.10 wheels (zoo CI)
    data_format = meta["network_data_format"]
    assert data_format["inputs"]["image"]["channel_def"] == {"0": "image"}
    assert data_format["outputs"]["pred"]["num_channels"] == len(data_format["outputs"]["pred"]["channel_def"])


def test_network_input_and_output_match_the_metadata():
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=INFERENCE,
        device="cpu",
        n=1,
        any=16,
    )


def test_zoo_layout_is_complete():
    for name in ("train", "evaluate", "inference", "multi_gpu_train", "metadata"):
        assert (CONFIGS / f"{name}.json").is_file(), name
    assert (CONFIGS / "logging.conf").is_file()
    assert (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "models" / ".gitkeep").is_file()
    assert (BUNDLE / "LICENSE").read_text() == (BUNDLE.parents[1] / "LICENSE").read_text()


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(BUNDLE.parents[1]),
        env=bundle_environ(BUNDLE),  # the configs' scripts.… from the repository root too
    )


def _cli_overrides(overrides: dict) -> list[str]:
    return [item for k, v in overrides.items() for item in (f"--{k}", json.dumps(v))]


@pytest.mark.integration
@pytest.mark.slow
def test_the_monai_bundle_command_line_trains_with_a_loss_override(nifti_dir, tmp_path):
    proc = _cli(
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        TRAIN,
        "--bundle_root",
        str(tmp_path),
        "--dataset_dir",
        nifti_dir,
        "--max_epochs",
        "1",
        "--loss",
        "dice",
        *_cli_overrides(TINY),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "val_mean_dice" in proc.stdout
    assert (tmp_path / "models" / "model.pt").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_the_multi_gpu_config_trains_with_two_cpu_processes(axial_store, tmp_path):
    proc = _cli(
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        json.dumps([TRAIN, str(CONFIGS / "multi_gpu_train.json")]),
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--bundle_root",
        str(tmp_path),
        "--dataset_dir",
        axial_store,
        "--max_epochs",
        "2",
        *_cli_overrides({**TINY, "val_fraction": 0.5, "batch_size": 4}),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "models")) == ["best.pt", "last.pt", "model.pt"]
    assert torch.load(tmp_path / "models" / "last.pt", weights_only=True)["epoch"] == 2


def test_evaluate_falls_back_to_the_training_defaults():
    train, evaluate = (ConfigParser.load_config_file(p) for p in (TRAIN, EVALUATE))
    defaults = evaluate["trained"]["defaults"]
    assert defaults == {k: train[k] for k in defaults}
