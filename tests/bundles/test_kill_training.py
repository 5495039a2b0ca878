"""Killing ``ct_segmentation_3d`` training at varying moments never corrupts a checkpoint or the store.

A worker process trains the bundle (tiny network, 16^3 patches, a few epochs) on a store and
is killed with ``SIGKILL`` again and again: inside a checkpoint write (after some of its
tensors are in the file), between a checkpoint's temporary file and its rename, after a
seeded random delay from the start of training, or at a seeded random Python call. Each
worker resumes from ``models/last.pt`` when there is one, as a user would after a crash.
After every kill:

* the store is byte for byte what it was (training only reads) and opens;
* every ``.pt`` file in ``models/`` loads and its weights fit the network: never a truncated
  or half-written checkpoint;
* the epoch of ``last.pt`` never goes back: a finished epoch is never lost.

Then the bundle's own command line (``python -m monai.bundle run ... --resume true``) finishes
the training from ``last.pt``: every epoch trained once in the step count, ``model.pt`` written.
Workers are forked from one process that imported MONAI, torch and TileDB once
(:class:`tests.harness.kill.ForkServer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.networks.nets import UNet

from radiobject_adapter import RadiObject
from radiobundles.resources import bundle_environ, bundle_scripts
from tests.harness.kill import ForkServer, arm_kill

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_segmentation_3d"
TRAIN = str(BUNDLE / "configs" / "train.json")
METADATA = str(BUNDLE / "configs" / "metadata.json")
CHANNELS, STRIDES = [8, 16, 32], [2, 2]
# 6 subjects: 4 train (2 iterations of 2 per epoch), 2 validation; a checkpoint every epoch
TINY = {
    "network_def#channels": CHANNELS,
    "network_def#strides": STRIDES,
    "network_def#num_res_units": 1,
    "patch_size": [16, 16, 16],
    "num_workers": 0,
    "sw_batch_size": 16,
    "device": "cpu",
    "batch_size": 2,
    "patches_per_volume": 2,
    "val_fraction": 0.34,
    "checkpoint_interval": 1,
    "keep_periodic": 2,
}
ITERATIONS_PER_EPOCH = 2
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "epoch", "step", "best_metric"}


# ---------------------------------------------------------------------------------------------
# the worker (runs in a forked process)
# ---------------------------------------------------------------------------------------------
def train(overrides: dict[str, Any], ready: str = "", kill: dict | None = None) -> None:
    """Train the bundle, resuming from ``last.pt`` when it exists (as after a crash).

    Args:
        overrides: bundle config overrides (dataset, outputs, the tiny network).
        ready: a file created when the trainer starts (after any resume).
        kill: :func:`arm_kill` arguments, armed just before the workflow runs.
    """
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    resume = os.path.isfile(os.path.join(overrides["ckpt_dir"], "last.pt"))
    with bundle_scripts(BUNDLE):  # the config's scripts.… are the bundle's own code
        wf = ConfigWorkflow(config_file=TRAIN, meta_file=METADATA, logging_file=False, resume=resume, **overrides)
        wf.initialize()
        if ready:
            trainer = wf.parser.get_parsed_content("train#trainer")
            trainer.add_event_handler(Events.STARTED, lambda _: Path(ready).touch())
        if kill:
            arm_kill(**kill)
        try:
            wf.run()
        finally:
            wf.finalize()


# ---------------------------------------------------------------------------------------------
# the test process
# ---------------------------------------------------------------------------------------------
def store_digest(root: str) -> dict[str, str]:
    """SHA-1 of every file of a local store, by relative path."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = hashlib.sha1(Path(path).read_bytes()).hexdigest()
    return out


def tiny_network() -> torch.nn.Module:
    with open(TRAIN) as fh:
        norm = json.load(fh)["network_def"]["norm"]  # the bundle's (batch norm since 0.2.0)
    return UNet(3, 1, 3, channels=CHANNELS, strides=STRIDES, num_res_units=1, norm=norm)


def check_checkpoints(ckpt_dir: Path) -> dict[str, int]:
    """Every ``.pt`` file loads whole and fits the network; returns ``name -> epoch``."""
    epochs = {}
    net = tiny_network()
    for path in sorted(ckpt_dir.glob("*.pt")):
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise AssertionError(f"{path.name} does not load ({type(err).__name__}: {err})") from err
        if path.name == "model.pt":  # the bundle's model: a bare state dict
            net.load_state_dict(saved)
            continue
        assert set(saved) >= CHECKPOINT_KEYS, f"{path.name}: {sorted(saved)}"
        net.load_state_dict(saved["model"])
        epochs[path.name] = int(saved["epoch"])
    return epochs


class KillLoop:
    """Kills training workers over one store and output folder, checking after each kill."""

    def __init__(self, server: ForkServer, store: str, root: Path, max_epochs: int) -> None:
        self.server, self.store, self.root = server, store, root
        root.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = root / "models"
        self.overrides = {
            **TINY,
            "dataset_dir": store,
            "max_epochs": max_epochs,
            "ckpt_dir": str(self.ckpt_dir),
            "log_dir": str(root / "runs"),
            "output_dir": str(root / "eval"),
        }
        self.digest = store_digest(store)
        self.subjects = RadiObject(store).CT.subject_ids
        self.log = str(root / "workers.log")
        self.last_epoch = 0
        self.landed: list[str] = []
        self.epochs: list[int] = []  # epoch of last.pt after each kill that landed

    def run(self, spec: dict[str, Any]) -> bool:
        """One kill point: ``{"delay": s}`` from the trainer's start, from outside, or
        :func:`arm_kill` arguments; True if the kill landed (the worker had not finished)."""
        if "delay" in spec:
            ready = self.root / "ready"
            ready.unlink(missing_ok=True)
            worker = self.server.spawn("t:train", log=self.log, overrides=self.overrides, ready=str(ready))
            while not ready.exists() and worker.poll() is None:
                time.sleep(0.005)
            killed = worker.kill_after(spec["delay"])
        else:
            worker = self.server.spawn("t:train", log=self.log, overrides=self.overrides, kill=spec)
            killed = worker.wait(timeout=600) == -9
        assert worker.exit in (0, -9), Path(self.log).read_text()[-4000:]
        self.check()
        if killed:
            self.landed.append(json.dumps(spec))
            self.epochs.append(self.last_epoch)
        return killed

    def check(self) -> None:
        assert store_digest(self.store) == self.digest, "training changed the store"
        assert RadiObject(self.store).CT.subject_ids == self.subjects
        epochs = check_checkpoints(self.ckpt_dir) if self.ckpt_dir.is_dir() else {}
        last = epochs.get("last.pt", 0)
        assert last >= self.last_epoch, f"last.pt went back from epoch {self.last_epoch} to {last}"
        self.last_epoch = last

    def finish_with_the_command_line(self) -> str:
        """``python -m monai.bundle run`` resumes from ``last.pt`` and finishes; returns its output."""
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", TRAIN, "--meta_file", METADATA]
        for key, value in {**self.overrides, "resume": self.last_epoch > 0}.items():
            cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
        env = bundle_environ(BUNDLE, {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-4000:]
        self.check()
        max_epochs = self.overrides["max_epochs"]
        last = torch.load(self.ckpt_dir / "last.pt", map_location="cpu", weights_only=True)
        # every epoch counted once: the runs resumed where the last finished epoch ended
        assert (last["epoch"], last["step"]) == (max_epochs, max_epochs * ITERATIONS_PER_EPOCH)
        assert (self.ckpt_dir / "model.pt").is_file() and (self.ckpt_dir / "best.pt").is_file()
        return output


@pytest.fixture(scope="module")
def fork_server():
    """Training workers forked from one process that imported MONAI, torch and TileDB once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    preload = ["torch", "monai.bundle", "ignite.engine", "radiobundles.ct3d", "radiobundles.training"]
    with ForkServer(preload=preload, modules={"t": __file__}, env=env) as server:
        assert server.threads <= 2, "the fork server must not run threads (torch, TileDB) before forking"
        yield server


@pytest.fixture
def store(ct_store, tmp_path) -> str:
    """A private copy of the session's store (its digest is compared after every kill)."""
    return str(shutil.copytree(ct_store, tmp_path / "store"))


# Kills placed inside a checkpoint write: after some of its tensors are in the file, and after
# the whole file is written but before it takes its name.
MID_CHECKPOINT = {"after_return_of": "write_record", "occurrence": 3}
BEFORE_RENAME = {"after_return_of": "serialization.py:save"}


@pytest.mark.slow
def test_killed_training_leaves_loadable_checkpoints_and_resumes_to_the_end(fork_server, store, tmp_path) -> None:
    """Short version (CI): four kill points, then the command line finishes the training.

    One of each kind of kill the twenty-point enumeration (``exhaustive``) draws from: inside a
    checkpoint write with some of its tensors in the file, a whole checkpoint written aside and
    not renamed (in the first epoch, and in the second with an older ``last.pt`` beside it),
    and a delay from outside in a resumed run; then the command line's resume.
    """
    loop = KillLoop(fork_server, store, tmp_path, max_epochs=3)
    # checkpoint files of an epoch, in order: best.pt (if Dice improved), last.pt, periodic_####.pt
    specs = [
        MID_CHECKPOINT,  # the run's first checkpoint (best.pt), a few of its tensors written
        {**BEFORE_RENAME, "occurrence": 2},  # last.pt of epoch 1 written aside, not renamed
        {**BEFORE_RENAME, "occurrence": 4},  # in epoch 2 (last.pt of epoch 1 is there)
        {"delay": 0.2},  # from outside, in the resumed run
    ]
    for spec in specs:
        loop.run(spec)
    assert len(loop.landed) >= 3, f"kills that landed: {loop.landed}"  # a delay may miss
    assert loop.epochs[:3] == [0, 0, 1]
    print(f"{len(loop.landed)} kill points landed; epoch of last.pt after each: {loop.epochs}")
    output = loop.finish_with_the_command_line()
    assert "resumed from" in output


def kill_specs(n: int, epoch_seconds: float, seed: int) -> list[dict[str, Any]]:
    """``n`` kill points: inside checkpoint writes (varying tensors and files), before a
    rename, after a random delay within the next epoch and a half."""
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    while len(specs) < n:
        kind = len(specs) % 4
        if kind == 0:
            specs.append({"after_return_of": "write_record", "occurrence": rng.randint(1, 60)})
        elif kind == 1:
            specs.append({**BEFORE_RENAME, "occurrence": rng.randint(1, 3)})
        else:
            specs.append({"delay": round(rng.uniform(0.0, 1.5 * epoch_seconds), 3)})
    return specs


@pytest.mark.slow
@pytest.mark.exhaustive  # make test-exhaustive; make test runs the short version above
def test_twenty_training_kill_points_never_corrupt_a_checkpoint_or_the_store(fork_server, store, tmp_path) -> None:
    """Twenty seeded kill points of the three kinds the short version runs in CI (inside a
    checkpoint's tensors, between a checkpoint's temporary file and its rename, a delay from
    outside), spread over more epochs and files."""
    # two uninterrupted epochs (into another output folder) set the scale of the delays
    probe = KillLoop(fork_server, store, tmp_path / "probe", max_epochs=2)
    ready = probe.root / "ready"
    worker = fork_server.spawn("t:train", log=probe.log, overrides=probe.overrides, ready=str(ready))
    assert worker.wait(timeout=600) == 0, Path(probe.log).read_text()[-4000:]
    epoch_seconds = (time.time() - ready.stat().st_mtime) / 2

    # far more epochs than the kills get through: the last kill still finds work to interrupt
    loop = KillLoop(fork_server, store, tmp_path / "run", max_epochs=40)
    for spec in kill_specs(40, epoch_seconds, seed=5):
        loop.run(spec)
        if len(loop.landed) >= 20:
            break
    assert len(loop.landed) >= 20, f"only {len(loop.landed)} kill points landed: {loop.landed}"
    print(f"{len(loop.landed)} kill points landed; epoch of last.pt after each: {loop.epochs}")
    loop.finish_with_the_command_line()
