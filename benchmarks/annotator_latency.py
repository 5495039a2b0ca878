"""What an annotator waits for: label-server start and ``/infer``, before and after, side by side.

Each variant is a copy of the ``ct_segmentation_3d`` bundle (by default the configs at the commit
this branch started from, ``before``, and the working tree's, ``after``). For every round and
variant, in an order shuffled per round so that load from other users of the machine is spread
over both, it:

1. starts ``monailabel start_server --app monailabel_app --studies <store> --conf models
   ct_segmentation_3d`` (the command the README gives; run as ``python -m monailabel.main``, what
   the ``monailabel`` wrapper executes, so that this checkout's packages are the ones served) with
   a fresh workspace and the variant's bundle (``--conf bundles_dir``), and times it to the first
   ``/info/`` that answers 200;
2. waits for the processes the server started at start-up (MONAI Label's scoring run) to end;
3. posts ``/infer/ct_segmentation_3d`` with 3D Slicer's parameters (NRRD result, uint8) for a
   96x96x64 and a 256x256x160 CT of the store, several times: the first call (it loads the
   model) and the median of the others;
4. stops the server.

It prints a table with wall seconds and the server's CPU seconds (children included) for each,
the load average, and optionally (``--dice``) the validation Dice of both variants trained with
the demo's recipe (:mod:`benchmarks.annotator_dice`). ``--levers`` adds the in-process table of
single levers (:mod:`benchmarks.annotator_levers`).

Run from the repository root (about 10 minutes on two idle cores; the Dice part adds two demo
trainings, run at the same time)::

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.annotator_latency --rounds 2 --dice --levers

``--variants after coarse=/path/to/bundles`` compares other bundle folders (``NAME=FOLDER``), e.g. the
Model Zoo's coarser working spacing written by :mod:`benchmarks.annotator_spacing`::

    python -m benchmarks.annotator_spacing --pixdim 1.5 --dest /tmp/sp15
    python -m benchmarks.annotator_latency --variants after sp15=/tmp/sp15/bundles --rounds 1 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil
import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = "ct_segmentation_3d"
# the keys 3D Slicer's MONAILabel module adds to every infer request (MONAILabel.py, 0.8.x)
SLICER_INFER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": False}
SHAPES = {"small": (96, 96, 64), "large": (256, 256, 160)}

__all__ = ["bundle_at_revision", "make_latency_store", "measure_server"]


def bundle_at_revision(rev: str, dest: str) -> str:
    """``bundles/ct_segmentation_3d`` as it was at git revision ``rev``, under ``dest``; returns the bundles folder."""
    bundles = os.path.join(dest, "bundles")
    os.makedirs(bundles, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", REPO, "archive", rev, f"bundles/{BUNDLE}"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return bundles


def make_latency_store(root: str) -> tuple[str, dict[str, str]]:
    """A store with one CT of each size of :data:`SHAPES` (labelled, so scoring has nothing to do)."""
    from radiobject_adapter import ingest_niftis
    from radiobject_adapter.synthetic import make_ct_dataset

    store = os.path.join(root, "store")
    ids = {}
    nifti = os.path.join(root, "nifti")
    for i, (name, shape) in enumerate(SHAPES.items()):
        ds = make_ct_dataset(nifti, n_subjects=1, shape_range=[(s, s) for s in shape], n_classes=2, seed=i, prefix=name)
        ids[name] = ds.subject_ids[0]
    if not os.path.isdir(store):
        report = ingest_niftis(store, {"CT": os.path.join(nifti, "imagesTr"), "seg": os.path.join(nifti, "labelsTr")})
        if not report.ok:
            raise RuntimeError(report.summary())
    return store, ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds of ``proc`` and its waited-for children, plus its live children."""
    total = sum(proc.cpu_times()[:4])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:4])
        except psutil.NoSuchProcess:
            pass
    return total


class _Server:
    def __init__(self, store: str, bundles: str, workdir: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = os.path.join(workdir, "app")
        os.makedirs(app, exist_ok=True)
        shutil.copy(os.path.join(REPO, "monailabel_app", "main.py"), app)
        cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", app, "--studies", store]
        cmd += ["--conf", "models", BUNDLE, "--conf", "bundles_dir", bundles]
        cmd += ["--conf", "workspace", os.path.join(workdir, "workspace")]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        env = {**os.environ, "PYTHONPATH": REPO, "MONAI_LABEL_SESSION_PATH": os.path.join(workdir, "sessions")}
        self.log = open(os.path.join(workdir, "server.log"), "w")  # noqa: SIM115 (closed in stop)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.ps = psutil.Process(self.proc.pid)

    def wait_info(self, timeout: float = 600) -> tuple[float, float]:
        """Seconds from the start to the first /info/ 200, and the CPU seconds spent by then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if requests.get(f"{self.url}/info/", timeout=30).status_code == 200:
                    return time.perf_counter() - self.t0, _cpu(self.ps)
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"no /info/ in {timeout} s; see {self.log.name}")

    def wait_children(self, timeout: float = 900) -> None:
        """Let the processes the server started at start-up (scoring) finish first."""
        deadline = time.monotonic() + timeout
        while self.ps.children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.5)

    def infer(self, image: str, shape: tuple[int, ...]) -> tuple[float, float, int]:
        cpu0, t0 = _cpu(self.ps), time.perf_counter()
        r = requests.post(
            f"{self.url}/infer/{BUNDLE}",
            params={"image": image, "output": "image"},
            data={"params": json.dumps(SLICER_INFER_PARAMS)},
            timeout=900,
        )
        wall = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"/infer of {image}: {r.status_code} {r.text[:500]}")
        _check_grid(r.content, shape, image)
        return wall, _cpu(self.ps) - cpu0, len(r.content)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()


def _check_grid(nrrd: bytes, shape: tuple[int, ...], image: str) -> None:
    """The label map must come back on the image's grid (3D Slicer overlays it voxel by voxel)."""
    header = nrrd.split(b"\n\n", 1)[0].decode("latin-1")
    sizes = next((line.split(":", 1)[1].split() for line in header.splitlines() if line.startswith("sizes:")), None)
    if sizes is None or tuple(int(v) for v in sizes[-3:]) != tuple(shape):
        raise RuntimeError(f"/infer of {image}: label sizes {sizes} are not the image's {list(shape)}")


def measure_server(store: str, ids: dict[str, str], bundles: str, workdir: str, repeats: int) -> dict[str, Any]:
    """One server start and its infer timings for one variant."""
    server = _Server(store, bundles, workdir)
    try:
        start_wall, start_cpu = server.wait_info()
        server.wait_children()
        out: dict[str, Any] = {"start_wall": start_wall, "start_cpu": start_cpu}
        for name in SHAPES:
            calls = [server.infer(ids[name], SHAPES[name]) for _ in range(repeats + 1)]
            out[f"{name}_first_wall"], out[f"{name}_first_cpu"] = calls[0][:2]
            out[f"{name}_wall"] = statistics.median(c[0] for c in calls[1:])
            out[f"{name}_cpu"] = statistics.median(c[1] for c in calls[1:])
        return out
    finally:
        server.stop()


def _table(results: dict[str, list[dict[str, Any]]], dice: dict[str, float] | None) -> str:
    names = list(results)
    rows = [
        ("server start -> first /info/ 200", "start"),
        ("infer 96x96x64, first call", "small_first"),
        ("infer 96x96x64", "small"),
        ("infer 256x256x160, first call", "large_first"),
        ("infer 256x256x160", "large"),
    ]
    head = f"{'':36s}" + "".join(f"{n + ' wall / CPU s':>24s}" for n in names) + f"{'ratio':>8s}"
    lines = [head, "-" * len(head)]
    for label, key in rows:
        cells, walls = "", []
        for n in names:
            w = statistics.median(r[f"{key}_wall"] for r in results[n])
            c = statistics.median(r[f"{key}_cpu"] for r in results[n])
            walls.append(w)
            cells += f"{w:>15.2f} / {c:6.2f}"
        ratio = walls[0] / walls[-1] if len(walls) > 1 and walls[-1] else float("nan")
        lines.append(f"{label:36s}{cells}{ratio:>8.1f}x")
    if dice:
        lines.append(f"{'validation Dice (demo recipe)':36s}" + "".join(f"{dice[n]:>24.4f}" for n in names))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--before", default=None, help="git revision of the 'before' bundle (default: merge-base with main)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["before", "after"],
        help="bundles folders to compare, NAME=FOLDER; 'before' alone: the bundle at --before; 'after' alone: this checkout's",
    )
    parser.add_argument("--rounds", type=int, default=2, help="server starts per variant")
    parser.add_argument("--repeats", type=int, default=2, help="infer calls per image after the first")
    parser.add_argument("--dice", action="store_true", help="also train both variants with the demo recipe")
    parser.add_argument("--levers", action="store_true", help="also time single levers in-process")
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    out = args.out or tempfile.mkdtemp(prefix="annotator_latency_")
    rev = (
        args.before
        or subprocess.run(
            ["git", "-C", REPO, "merge-base", "HEAD", "main"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    variants = {}
    for spec in args.variants:
        name, _, path = spec.partition("=")
        if name == "before" and not path:
            path = bundle_at_revision(rev, os.path.join(out, "before"))
        variants[name] = os.path.abspath(path or os.path.join(REPO, "bundles"))
    print(f"before: bundle at {rev[:10]}; variants {variants}; working folder {out}", flush=True)
    dice_runs = None
    if args.dice and {"before", "after"} <= set(variants):  # trains in the background while the servers are timed
        dice_runs = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.annotator_dice", "--out", os.path.join(out, "dice"), "--variants"]
            + [f"{k}={v}" for k, v in variants.items()],
            cwd=REPO,
            stdout=open(os.path.join(out, "dice.log"), "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
    store, ids = make_latency_store(os.path.join(out, "data"))
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in variants}
    load0 = os.getloadavg()
    for rnd in range(args.rounds):
        order = random.Random(rnd).sample(list(variants), len(variants))
        for name in order:
            workdir = os.path.join(out, f"server-{name}-{rnd}")
            res = measure_server(store, ids, variants[name], workdir, args.repeats)
            results[name].append(res)
            print(f"round {rnd + 1} {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()), flush=True)
    load1 = os.getloadavg()
    if args.levers and {"before", "after"} <= set(variants):
        from benchmarks.annotator_levers import run_levers

        print(run_levers(os.path.join(variants["before"], BUNDLE), os.path.join(variants["after"], BUNDLE)))
    dice = None
    if dice_runs is not None:
        if dice_runs.wait() != 0:
            print(f"Dice comparison failed; see {os.path.join(out, 'dice.log')}")
        else:
            with open(os.path.join(out, "dice", "dice.json")) as fh:
                dice = {r["variant"]: r["mean_dice"] for r in json.load(fh)}
    print(
        f"\nload average (1/5/15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
        f"after the servers {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}; {os.cpu_count()} CPUs"
    )
    print(_table(results, dice))
    with open(os.path.join(out, "latency.json"), "w") as fh:
        json.dump({"before_rev": rev, "load": [load0, load1], "results": results, "dice": dice}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
