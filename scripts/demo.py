"""`make demo`: synthetic CT -> TileDB store -> train / evaluate / infer with the ct_segmentation_3d bundle.

Run: ``make demo`` (or ``.venv/bin/python scripts/demo.py --out demo_output``). Training has a time
budget (``--train-budget``, 5 minutes by default): it runs up to ``--epochs`` epochs and stops after
the last epoch that fits, so a busy machine gets fewer epochs, not a longer demo; the summary says
how many epochs ran and compares the Dice with the constant predictor's either way. Steps:

1. writes synthetic CT-like subjects (int16 HU images, three structures, varying shapes, spacings
   and oblique affines) as NIfTI; the labels of the last ``--test-subjects`` are held out;
2. ingests them into a local TileDB store with the ``radiobundles ingest`` command, declaring the
   label classes (the bundles take ``class_names`` from the store); the held-out subjects enter as
   images without labels;
3. trains the bundle with MONAI's bundle runner (``python -m monai.bundle run``) from the store:
   label-driven patch reads, sliding-window validation, best checkpoint, TensorBoard logs;
4. evaluates the best checkpoint on the validation subjects (Dice and HD95 per subject and class);
5. runs inference on the held-out subjects: NIfTI predictions and a ``pred`` collection in the store;
6. scores the held-out predictions against their labels, compares with the constant-predictor
   baseline, draws the training curves and the overlays, and prints where everything is.

Everything lands in the output folder; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np

from radiobundles.resources import bundle_environ, bundle_path

BUNDLE = str(bundle_path("ct_segmentation_3d"))  # checkout, installed wheel or $RADIOBUNDLES_BUNDLES_DIR
CLASS_NAMES = ["background", "structure_1", "structure_2", "structure_3"]
HU_WINDOW = (-200, 600)


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _run(step: str, cmd: list[str], log_dir: str) -> float:
    """Run ``cmd``, showing its output as it comes and keeping a copy in ``log_dir/<step>.log``; returns seconds."""
    shown = " ".join(c if " " not in c and "[" not in c else f"'{c}'" for c in cmd[1:])
    print(f"  $ python {shown}", flush=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # MONAI's and TileDB's notices would drown the progress
    env = bundle_environ(BUNDLE, env)  # the configs' scripts.… are the bundle's own code
    t0 = time.perf_counter()
    with open(os.path.join(log_dir, f"{step}.log"), "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(4096):  # raw chunks: progress bars redraw in place
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log.write(chunk)
        if proc.wait() != 0:
            raise SystemExit(f"step {step!r} failed (exit status {proc.returncode}); see {log.name}")
    return time.perf_counter() - t0


def _bundle(config: str | list[str], overrides: dict[str, Any]) -> list[str]:
    files = [os.path.join(BUNDLE, "configs", c) for c in ([config] if isinstance(config, str) else config)]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file"]
    cmd.append(files[0] if len(files) == 1 else "[" + ",".join(f"'{f}'" for f in files) + "]")
    # bundle_root is "." (the Model Zoo convention); the demo runs from anywhere, outputs go where overrides say
    overrides = {"bundle_root": BUNDLE, **overrides}
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return cmd


def _epochs_ran(tb_dir: str) -> int:
    from radiobundles.ct3d.report import read_scalars

    return len(read_scalars(tb_dir).get("epoch/train_loss", []))


def _make_data(root: str, n_labelled: int, n_test: int, seed: int) -> tuple[Any, list[str]]:
    from radiobject_adapter.synthetic import make_ct_dataset

    ds = make_ct_dataset(
        root,
        n_subjects=n_labelled + n_test,
        shape_range=((64, 96), (64, 96), (40, 64)),
        spacing_range=(0.7, 2.5),
        n_classes=len(CLASS_NAMES) - 1,
        oblique=True,
        seed=seed,
    )
    held_out = ds.subject_ids[n_labelled:]
    os.makedirs(os.path.join(root, "labelsTs"))
    for sid in held_out:
        name = f"{sid}.nii.gz"
        shutil.move(os.path.join(ds.labels_dir, name), os.path.join(root, "labelsTs", name))
    return ds, held_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0].replace("``", "`"))
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--subjects", type=int, default=16, help="labelled subjects (train + validation)")
    parser.add_argument("--test-subjects", type=int, default=4, help="held-out subjects for inference")
    parser.add_argument("--epochs", type=int, default=40, help="most epochs (the time budget may stop sooner)")
    parser.add_argument(
        "--train-budget", type=float, default=300, help="seconds training may take (stops between epochs)"
    )
    parser.add_argument("--patch-size", type=int, default=48, help="training patch edge (voxels, >= 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (patch reads are cheap)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.subjects < 4:
        parser.error("--subjects must be at least 4 (train and validation need subjects)")
    t_start = time.perf_counter()

    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    data_dir, store = os.path.join(out, "nifti"), os.path.join(out, "store")
    log_dir, tb_dir = os.path.join(out, "logs"), os.path.join(out, "tensorboard")
    models_dir, eval_dir, pred_dir = (os.path.join(out, n) for n in ("models", "eval", "predictions"))
    os.makedirs(log_dir)
    timings: dict[str, float] = {}

    n_total = args.subjects + args.test_subjects
    print(f"[1/6] writing {n_total} synthetic CT-like subjects, labels of {args.test_subjects} held out ...")
    t0 = time.perf_counter()
    ds, held_out = _make_data(data_dir, args.subjects, args.test_subjects, args.seed)
    timings["data"] = time.perf_counter() - t0

    print("[2/6] ingesting into a TileDB store with the `radiobundles ingest` command ...")
    cmd = [sys.executable, "-m", "radiobject_adapter.cli", "ingest", store, "-c", f"CT={ds.images_dir}"]
    cmd += ["-c", f"seg={ds.labels_dir}", "--obs-meta", ds.subject_table, "--label-classes", ",".join(CLASS_NAMES)]
    timings["ingest"] = _run("ingest", cmd, log_dir)

    shared = {
        "dataset_dir": store,
        "patch_size": [args.patch_size] * 3,
        "hu_window": list(HU_WINDOW),
        "num_workers": args.num_workers,
        "ckpt_dir": models_dir,
    }
    print(
        f"[3/6] training the bundle (up to {args.epochs} epochs of {args.patch_size}^3 patches, "
        f"time budget {args.train_budget:.0f} s) ..."
    )
    train = {
        **shared,
        "max_epochs": args.epochs,
        "batch_size": 2,
        "patches_per_volume": 2,
        "learning_rate": 0.002,
        "val_interval": 2,
        "log_dir": tb_dir,
        "output_dir": eval_dir,
        "seed": args.seed,
    }
    # the run's settings, kept for training on later: python -m monai.bundle run --args_file <this> ...
    train_args = os.path.join(out, "train_args.json")
    with open(train_args, "w") as fh:
        json.dump({"config_file": os.path.join(BUNDLE, "configs", "train.json"), **train}, fh, indent=1)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--args_file", train_args]
    timings["train"] = _run("train", [*cmd, "--time_budget_s", str(args.train_budget)], log_dir)

    print("[4/6] evaluating the best checkpoint on the validation subjects ...")
    evaluate = {k: v for k, v in train.items() if k not in ("max_epochs", "log_dir")}
    timings["evaluate"] = _run("evaluate", _bundle(["train.json", "evaluate.json"], evaluate), log_dir)

    print(f"[5/6] inference on the {len(held_out)} held-out subjects (NIfTI + store collection 'pred') ...")
    infer = {
        **shared,
        "split": "unlabelled",
        "output_dir": pred_dir,
        "pred_collection": "pred",
    }
    timings["inference"] = _run("inference", _bundle("inference.json", infer), log_dir)

    print("[6/6] scoring, baseline, figures ...")
    summary = _report(out, store, data_dir, held_out, tb_dir, eval_dir, pred_dir, args.seed)
    summary["epochs"] = {"max": args.epochs, "ran": _epochs_ran(tb_dir), "train_budget_s": args.train_budget}
    timings["total"] = time.perf_counter() - t_start
    summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    summary["store_bytes"] = _du(store)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    _print_summary(summary, out)
    return 0


def _report(
    out: str, store: str, data_dir: str, held_out: list[str], tb_dir: str, eval_dir: str, pred_dir: str, seed: int
) -> dict[str, Any]:
    from radiobject_adapter import RadiObject, collection_address
    from radiobundles.ct3d.report import constant_prediction_dice, dice_per_class, plot_overlays, plot_training_curves
    from radiobundles.datalists import make_datalist

    n_classes = len(CLASS_NAMES)
    with open(os.path.join(eval_dir, "metrics_summary.json")) as fh:
        evaluation = json.load(fh)
    radi = RadiObject(store)
    validation = [it["subject_id"] for it in make_datalist(store, split="validation", seed=seed)]
    val_baseline = constant_prediction_dice({s: radi.seg[s].to_numpy() for s in validation}, n_classes)

    test_labels = {s: os.path.join(data_dir, "labelsTs", f"{s}.nii.gz") for s in held_out}
    test_preds = {s: os.path.join(pred_dir, f"{s}_seg.nii.gz") for s in held_out}
    test_dice = dice_per_class({s: (test_preds[s], test_labels[s]) for s in held_out}, n_classes)
    test_baseline = constant_prediction_dice(test_labels, n_classes)

    def mean(table: dict[str, list[float]]) -> float:
        return float(np.nanmean([v for row in table.values() for v in row]))

    baseline = mean(val_baseline)
    curves = plot_training_curves(tb_dir, os.path.join(out, "training_curves.png"), baseline=baseline)
    cases = [
        {
            "subject_id": s,
            "image": os.path.join(data_dir, "imagesTr", f"{s}_0000.nii.gz"),
            "label": test_labels[s],
            "pred": test_preds[s],
            "dice": float(np.nanmean(test_dice[s])),
        }
        for s in held_out
    ]
    overlays = plot_overlays(cases, os.path.join(out, "overlays.png"), window=HU_WINDOW)
    return {
        "validation_subjects": validation,
        "validation_mean_dice": evaluation["mean_dice"],
        "validation_mean_hd95_mm": evaluation["mean_hd95_mm"],
        "validation_dice_per_class": {k: v["dice"] for k, v in evaluation["per_class"].items()},
        "validation_constant_predictor_dice": baseline,
        "test_subjects": held_out,
        "test_mean_dice": mean(test_dice),
        "test_constant_predictor_dice": mean(test_baseline),
        "store_prediction_collection": f"{collection_address(store, 'pred')} ({len(radi.refresh().pred)} volumes)",
        "paths": {
            "metrics_csv": evaluation["csv"],
            "metrics_summary": os.path.join(eval_dir, "metrics_summary.json"),
            "training_curves_png": curves,
            "overlays_png": overlays,
            "predictions": pred_dir,
            "tensorboard": tb_dir,
            "checkpoint": os.path.join(out, "models", "model.pt"),
            "store": store,
            "nifti": data_dir,
            "logs": os.path.join(out, "logs"),
        },
    }


def _subjects(ids: list[str]) -> str:
    return f"{len(ids)} subject{'' if len(ids) == 1 else 's'}"


def _print_summary(s: dict[str, Any], out: str) -> None:
    p = s["paths"]
    print("\nDemo summary")
    print(
        f"  validation ({_subjects(s['validation_subjects'])}): mean Dice {s['validation_mean_dice']:.3f} "
        f"(per class {', '.join(f'{k} {v:.3f}' for k, v in s['validation_dice_per_class'].items())}), "
        f"mean HD95 {s['validation_mean_hd95_mm']:.1f} mm"
    )
    print(
        f"  trivial baseline (every voxel one class, best constant predictor): {s['validation_constant_predictor_dice']:.3f}"
    )
    print(
        f"  held-out ({_subjects(s['test_subjects'])}): mean Dice {s['test_mean_dice']:.3f} "
        f"vs constant predictor {s['test_constant_predictor_dice']:.3f}"
    )
    print(f"  metrics CSV:      {p['metrics_csv']}")
    print(f"  training curves:  {p['training_curves_png']}")
    print(f"  overlays:         {p['overlays_png']}")
    print(f"  predictions:      {p['predictions']}  and {s['store_prediction_collection']}")
    print(f"  TensorBoard:      tensorboard --logdir {p['tensorboard']}")
    print(f"  checkpoint:       {p['checkpoint']}")
    print(f"  store / NIfTI:    {p['store']}  ({s['store_bytes'] / 1e6:.1f} MB) / {p['nifti']}")
    print(f"  step logs:        {p['logs']}")
    print(f"  wall time:        {s['seconds']}  (seconds)")
    e = s["epochs"]
    cut = " (stopped by the time budget)" if e["ran"] < e["max"] else ""
    print(f"  training:         {e['ran']} of {e['max']} epochs{cut}, budget {e['train_budget_s']:.0f} s")
    print(f"  summary JSON:     {os.path.join(out, 'summary.json')}")
    # short paths for a demo inside the repository, absolute ones elsewhere (no ../../tmp/...)
    rel = os.path.relpath(out)
    if rel.startswith(os.pardir):
        rel = os.path.abspath(out)
    b = "bundles/ct_segmentation_3d/configs"
    print("\nNext steps (from the repository root, with .venv/bin on PATH: make shell)")
    print(f"  serve this model to 3D Slicer: make label-server STUDIES={rel}/store")
    print(
        f"  train on:  python -m monai.bundle run --args_file {rel}/train_args.json --resume true --max_epochs {e['max'] + 20}"
    )
    print(
        f"  export:    python -m monai.bundle ckpt_export network_def --filepath {rel}/models/model.ts "
        f"--ckpt_file {rel}/models/model.pt --meta_file {rel}/models/metadata.json --config_file {b}/inference.json "
        f"--dataset_dir {rel}/store"
    )


if __name__ == "__main__":
    sys.exit(main())
