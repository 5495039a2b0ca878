"""Validation Dice of bundle variants trained the same way on the demo's synthetic data.

A faster default is only kept if it segments as well: each variant (a copy of the bundle's
configs, e.g. the ones before and after a change) is trained with ``make demo``'s recipe and
budget (same data, split, seed, epochs, patch size, learning rate) by MONAI's bundle runner, then
evaluated on the validation subjects with ``evaluate.json`` (Dice per subject and class, on the
source grid). The variants train at the same time, so that load from other users of the machine
falls on all of them alike; their CPU seconds are reported with the Dice.

Run on its own::

    python -m benchmarks.annotator_dice --variants before=/tmp/before/bundles after=bundles --out /tmp/dice
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from radiobundles.resources import bundle_environ

__all__ = ["DEMO_RECIPE", "DiceResult", "compare_dice", "make_demo_store"]

BUNDLE = "ct_segmentation_3d"
CLASS_NAMES = ["background", "structure_1", "structure_2", "structure_3"]
# scripts/demo.py's data and training recipe (its defaults on 2026-12-07)
DEMO_DATA = {
    "n_subjects": 16,
    "shape_range": ((64, 96), (64, 96), (40, 64)),
    "spacing_range": (0.7, 2.5),
    "n_classes": len(CLASS_NAMES) - 1,
    "oblique": True,
}
DEMO_RECIPE: dict[str, Any] = {
    "patch_size": [48, 48, 48],
    "hu_window": [-200, 600],
    "num_workers": 0,
    "class_names": CLASS_NAMES,
    "max_epochs": 60,
    "batch_size": 2,
    "patches_per_volume": 2,
    "learning_rate": 0.002,
    "val_interval": 2,
    "device": "cpu",
}


@dataclass
class DiceResult:
    variant: str
    mean_dice: float
    per_class: dict[str, float]
    train_wall_s: float
    train_cpu_s: float


def make_demo_store(root: str, seed: int = 0) -> str:
    """The demo's labelled subjects as NIfTI and as a TileDB store under ``root``; returns the store."""
    from radiobject_adapter import ingest_niftis
    from radiobject_adapter.synthetic import make_ct_dataset

    store = os.path.join(root, "store")
    if os.path.isdir(store):
        return store
    ds = make_ct_dataset(os.path.join(root, "nifti"), seed=seed, **DEMO_DATA)
    report = ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False)
    if not report.ok:
        raise RuntimeError(report.summary())
    return store


def _bundle_cmd(configs: list[str], overrides: dict[str, Any]) -> list[str]:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file"]
    cmd.append(configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]")
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return cmd


def _start(cmd: list[str], log: str, cfg: str, threads: int = 1) -> subprocess.Popen:
    # one thread each: the variants train side by side on a shared machine, where more OpenMP
    # threads than free cores spin-wait (the same work took 2.6x the CPU with 2 threads here)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)}
    env = bundle_environ(os.path.dirname(cfg), env)  # each variant's configs use its own scripts/
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def _wait(proc: subprocess.Popen, what: str, log: str) -> float:
    """Wait for ``proc``; returns its CPU seconds (user + system, children included)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); see {log}")
    return usage.ru_utime + usage.ru_stime


def compare_dice(variants: dict[str, str], out: str, seed: int = 0, epochs: int | None = None) -> list[DiceResult]:
    """Train and evaluate every variant (``name -> bundles folder``) on the demo data; Dice per variant."""
    os.makedirs(out, exist_ok=True)
    store = make_demo_store(os.path.join(out, "data"), seed)
    recipe = {**DEMO_RECIPE, "dataset_dir": store, "seed": seed}
    if epochs:
        recipe["max_epochs"] = epochs
    procs, runs = {}, {}
    for name, bundles in variants.items():
        cfg = os.path.join(os.path.abspath(bundles), BUNDLE, "configs")
        run_dir = os.path.join(out, name)
        dirs = {k: os.path.join(run_dir, k.split("_")[0]) for k in ("ckpt_dir", "log_dir", "output_dir")}
        runs[name] = (cfg, dirs, run_dir)
        os.makedirs(run_dir, exist_ok=True)
        log = os.path.join(run_dir, "train.log")
        procs[name] = (
            _start(_bundle_cmd([os.path.join(cfg, "train.json")], {**recipe, **dirs}), log, cfg),
            log,
            time.time(),
        )
        print(f"  training {name} ({recipe['max_epochs']} epochs): log {log}", flush=True)
    results = []
    for name, (proc, log, t0) in procs.items():
        cpu = _wait(proc, f"training {name}", log)
        wall = time.time() - t0
        cfg, dirs, run_dir = runs[name]
        evaluate = {k: v for k, v in {**recipe, **dirs}.items() if k not in ("max_epochs", "log_dir")}
        elog = os.path.join(run_dir, "evaluate.log")
        configs = [os.path.join(cfg, "train.json"), os.path.join(cfg, "evaluate.json")]
        _wait(_start(_bundle_cmd(configs, evaluate), elog, cfg), f"evaluating {name}", elog)
        with open(os.path.join(dirs["output_dir"], "metrics_summary.json")) as fh:
            summary = json.load(fh)
        per_class = {k: v["dice"] for k, v in summary["per_class"].items()}
        results.append(DiceResult(name, summary["mean_dice"], per_class, wall, cpu))
        print(f"  {name}: validation mean Dice {summary['mean_dice']:.4f} {per_class}", flush=True)
    with open(os.path.join(out, "dice.json"), "w") as fh:
        json.dump([asdict(r) for r in results], fh, indent=1)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", required=True, help="name=bundles_folder ...")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=None, help=f"default: the demo's {DEMO_RECIPE['max_epochs']}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variants)
    results = compare_dice(variants, args.out, args.seed, args.epochs)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for r in results:
        print(f"{r.variant:>10s}  Dice {r.mean_dice:.4f}  train {r.train_wall_s:.0f} s wall, {r.train_cpu_s:.0f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
