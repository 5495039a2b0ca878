"""Click-guided labelling, measured: Dice vs number of clicks, and one click's round trip through the server.

1. **Dice vs clicks.** Writes synthetic CT (``bundles/ct_deepedit_3d/scripts/synthetic.py``:
   a bright structure and one only ``--faint-hu`` above the tissue, which an automatic pass
   misses), trains a copy of the ``ct_deepedit_3d`` bundle on it (``train.json``; ``--small``:
   the tests' small network and grid) and runs ``evaluate.json``: Dice per label after 0, 1, 5
   and 10 simulated clicks on ``--heldout`` new volumes (another seed), printed as a table (and the
   bundle's CSV and PNG under ``<workdir>/bundles/ct_deepedit_3d/eval/``).
2. **Click round trip.** Starts the MONAI Label server (``python -m monailabel.main start_server
   --app monailabel_app ... --conf models ct_deepedit_3d``, the repository bundle as it is: the
   default network and grid) over a store with one ``--volume`` CT (default 128x128x96), and posts
   ``/infer/ct_deepedit_3d`` with 3D Slicer's DeepEdit parameters (every label's points under its
   name, ``label``, NRRD uint8 result) holding one click, ``--repeats`` times after a first call;
   prints the median wall seconds and the server's CPU seconds per click.

Run from the repository root (two idle cores: about 5 minutes with ``--small``)::

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.deepedit_clicks --small --epochs 12
    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.deepedit_clicks --skip-dice --repeats 5
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE_NAME = "ct_deepedit_3d"
BUNDLE = os.path.join(REPO, "bundles", BUNDLE_NAME)
SMALL = {
    "spatial_size": [24, 24, 16],
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "guidance_sigma": 1,  # the click blob scaled with the grid (3 voxels at 96 x 96 x 64)
}

__all__ = ["click_round_trip", "dice_vs_clicks"]


def _bundle_scripts():
    sys.path.insert(0, BUNDLE)
    try:
        from scripts.synthetic import click_volume, make_click_dataset
    finally:
        sys.path.remove(BUNDLE)
        for k in [k for k in sys.modules if k == "scripts" or k.startswith("scripts.")]:
            del sys.modules[k]
    return click_volume, make_click_dataset


def _run_bundle(args: list[str], cwd: str) -> tuple[float, float]:
    """``python -m monai.bundle <args>`` in ``cwd``; returns (wall s, CPU s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-4000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return time.perf_counter() - t0, cpu


def dice_vs_clicks(
    workdir: str, n_subjects: int, shape: tuple[int, ...], epochs: int, small: bool, faint_hu: float, heldout: int
):
    """Train a copy of the bundle on synthetic data, evaluate it on ``heldout`` new volumes; returns
    ``{(label, clicks): Dice}`` and costs."""
    _, make_click_dataset = _bundle_scripts()
    data = os.path.join(workdir, "data")
    make_click_dataset(data, n_subjects=n_subjects, shape=shape, faint_hu=faint_hu)
    held = os.path.join(workdir, "heldout")
    make_click_dataset(held, n_subjects=heldout, shape=shape, faint_hu=faint_hu, seed=5, prefix="held")
    copy = os.path.join(workdir, "bundles", BUNDLE_NAME)
    shutil.copytree(BUNDLE, copy, ignore=shutil.ignore_patterns("eval", "runs", "*.pt", "*.ts", "__pycache__"))
    extra = ["--num_workers", "0"]
    for key, value in SMALL.items() if small else []:
        extra += [f"--{key}", json.dumps(value)]
    lr = ["--learning_rate", "0.01"] if small else []
    train = _run_bundle(["run", "--config_file", "configs/train.json", "--dataset_dir", data, "--max_epochs",
                         str(epochs), "--val_interval", str(epochs), *lr, *extra], copy)  # fmt: skip
    evaluate = _run_bundle(["run", "--config_file", "['configs/train.json','configs/evaluate.json']", "--dataset_dir",
                            held, "--validate#datalist#split", "all", *extra], copy)  # fmt: skip
    with open(os.path.join(copy, "eval", "dice_vs_clicks_summary.csv")) as fh:
        summary = {(r["label"], int(r["clicks"])): float(r["mean_dice"]) for r in csv.DictReader(fh)}
    return summary, {"train": train, "evaluate": evaluate}


def _cpu(proc: psutil.Process) -> float:
    total = sum(proc.cpu_times()[:4])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:4])
        except psutil.NoSuchProcess:
            pass
    return total


def click_round_trip(workdir: str, volume: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Median wall and server CPU seconds of one DeepEdit click ``/infer`` on a ``volume`` CT."""
    import nibabel as nib

    from radiobject_adapter import ingest_niftis

    click_volume, _ = _bundle_scripts()
    nifti = os.path.join(workdir, "rt_nifti")
    os.makedirs(os.path.join(nifti, "imagesTr"))
    os.makedirs(os.path.join(nifti, "labelsTr"))
    image, label = click_volume(volume, seed=3)
    nib.save(
        nib.Nifti1Image(image, np.diag([1.0, 1.0, 1.5, 1.0])), os.path.join(nifti, "imagesTr", "rt_000_0000.nii.gz")
    )
    nib.save(nib.Nifti1Image(label, np.diag([1.0, 1.0, 1.5, 1.0])), os.path.join(nifti, "labelsTr", "rt_000.nii.gz"))
    store = os.path.join(workdir, "rt_store")
    report = ingest_niftis(store, {"CT": os.path.join(nifti, "imagesTr"), "seg": os.path.join(nifti, "labelsTr")},
                           progress=False)  # fmt: skip
    if not report.ok:
        raise RuntimeError(report.summary())
    app = os.path.join(workdir, "app")
    os.makedirs(app)
    shutil.copy(os.path.join(REPO, "monailabel_app", "main.py"), app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", app, "--studies", store,
           "--conf", "models", BUNDLE_NAME, "--conf", "epistemic", "false",
           "--conf", "workspace", os.path.join(workdir, "workspace"), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": REPO, "MONAI_LABEL_SESSION_PATH": os.path.join(workdir, "sessions")}
    with open(os.path.join(workdir, "server.log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 600
        info = None
        while time.monotonic() < deadline and info is None:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {workdir}/server.log")
            try:
                r = requests.get(f"{url}/info/", timeout=30)
                info = r.json() if r.status_code == 200 else None
            except requests.RequestException:
                time.sleep(0.5)
        if info is None:
            raise TimeoutError(f"no /info/ in 600 s; see {workdir}/server.log")
        click = [int(c) for c in np.argwhere(label == 2).mean(axis=0).round()]
        params = {name: [] for name in info["labels"]}
        params.update(
            {"structure_2": [click], "label": "structure_2", "result_extension": ".nrrd", "result_dtype": "uint8"}
        )
        walls, cpus = [], []
        for _ in range(repeats + 1):
            cpu0, t0 = _cpu(ps), time.perf_counter()
            r = requests.post(f"{url}/infer/{BUNDLE_NAME}", params={"image": "rt_000", "output": "image"},
                              data={"params": json.dumps(params)}, timeout=900)  # fmt: skip
            if r.status_code != 200:
                raise RuntimeError(f"/infer: {r.status_code} {r.text[:500]}")
            walls.append(time.perf_counter() - t0)
            cpus.append(_cpu(ps) - cpu0)
        return {"first_wall_s": walls[0], "wall_s": statistics.median(walls[1:]), "cpu_s": statistics.median(cpus[1:])}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="keep data, bundle copy and logs here (default: a temp dir)")
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--shape", default="24,24,16", help="training volume shape, e.g. 40,40,32")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--heldout", type=int, default=10, help="new volumes (another seed) the evaluation uses")
    parser.add_argument("--small", action="store_true", help="the tests' small network and 24x24x16 grid")
    parser.add_argument(
        "--faint-hu", type=float, default=0.0, help="contrast of the structure the automatic pass misses"
    )
    parser.add_argument("--volume", default="128,128,96", help="CT shape of the round-trip measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-dice", action="store_true")
    parser.add_argument("--skip-round-trip", action="store_true")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="deepedit_bench_")
    os.makedirs(workdir, exist_ok=True)
    print(f"workdir {workdir}; load average {os.getloadavg()}")
    if not args.skip_dice:
        shape = tuple(int(v) for v in args.shape.split(","))
        summary, costs = dice_vs_clicks(
            workdir, args.subjects, shape, args.epochs, args.small, args.faint_hu, args.heldout
        )
        counts = sorted({n for _, n in summary})
        print("\n| label | " + " | ".join(f"{n} clicks" for n in counts) + " |")
        print("|---" * (len(counts) + 1) + "|")
        for label in sorted({k for k, _ in summary}):
            print(f"| {label} | " + " | ".join(f"{summary[(label, n)]:.3f}" for n in counts) + " |")
        for step, (wall, cpu) in costs.items():
            print(f"{step}: {wall:.0f} s wall, {cpu:.0f} CPU s")
    if not args.skip_round_trip:
        volume = tuple(int(v) for v in args.volume.split(","))
        rt = click_round_trip(workdir, volume, args.repeats)
        print(f"\nclick round trip, {'x'.join(map(str, volume))} CT, default network: first {rt['first_wall_s']:.2f} s, "
              f"then median {rt['wall_s']:.2f} s wall, {rt['cpu_s']:.2f} server CPU s")  # fmt: skip
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
