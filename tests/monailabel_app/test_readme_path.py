"""A newcomer's first hour: what ``make demo`` makes feeds every next step the README documents.

Runs the demo (with a tiny budget), then on its own output: trains more epochs with the command
the demo prints (``--args_file .../train_args.json --resume true``), exports the model with the
README's ``ckpt_export`` line, starts the MONAI Label server with what ``make label-server
STUDIES=<demo>/store`` runs, and asks it for ``/info/``, ``/infer/`` and ``/train/`` with the
defaults ``/info/`` advertises (the trainer options 3D Slicer shows; training is kept to one epoch
of small patches, the overrides documented in ``monailabel_app/lib/train.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
import torch
from monailabel.client import MONAILabelClient

REPO = Path(__file__).resolve().parents[2]
NETWORK_GUARD = str(Path(__file__).resolve().parent / "network_guard")
B = "bundles/ct_segmentation_3d/configs"
DEMO_CLASSES = ["background", "structure_1", "structure_2", "structure_3"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _label_server_conf(store: str) -> dict[str, str]:
    """The ``--conf`` options ``make label-server STUDIES=<store>`` passes (read from ``make -n``)."""
    done = _run(["make", "-n", "-o", "install", "label-server", f"STUDIES={store}"], timeout=60)
    words = shlex.split(done.stdout.replace("\\\n", " "))
    start = words.index("start_server")
    assert words[words.index("--studies", start) + 1] == store
    return {words[i + 1]: words[i + 2] for i in range(start, len(words) - 2) if words[i] == "--conf"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("newcomer") / "demo_output"
    cmd = [sys.executable, "scripts/demo.py", "--out", str(out), "--subjects", "5", "--test-subjects", "1"]
    done = _run([*cmd, "--epochs", "1", "--patch-size", "32", "--train-budget", "600"], timeout=3000)
    assert "make label-server STUDIES=" in done.stdout and "--args_file" in done.stdout
    return out


def test_the_store_declares_the_demo_classes_and_the_model_outputs_them(demo: Path) -> None:
    from radiobject_adapter import RadiObject
    from radiobject_adapter.store.label_classes import declared_label_classes

    assert declared_label_classes(RadiObject(str(demo / "store")).seg) == DEMO_CLASSES
    state = torch.load(demo / "models" / "model.pt", map_location="cpu", weights_only=True)
    last = [k for k in state if k.endswith(".weight")][-1]
    assert state[last].shape[1] == len(DEMO_CLASSES)
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["epochs"]["ran"] == 1 and "test_constant_predictor_dice" in summary


def test_training_more_epochs_with_the_printed_command(demo: Path) -> None:
    before = (demo / "models" / "model.pt").stat().st_mtime_ns
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--args_file", str(demo / "train_args.json")]
    _run([*cmd, "--resume", "true", "--max_epochs", "2"], timeout=3000)
    last = torch.load(demo / "models" / "last.pt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2
    assert (demo / "models" / "model.pt").stat().st_mtime_ns > before


def test_ckpt_export_of_the_demo_model_with_the_readme_command(demo: Path) -> None:
    ts = demo / "models" / "model.ts"
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts)]
    cmd += ["--ckpt_file", str(demo / "models" / "model.pt"), "--meta_file", str(demo / "models" / "metadata.json")]
    cmd += ["--config_file", f"{B}/inference.json", "--dataset_dir", str(demo / "store")]
    readme = (REPO / "README.md").read_text()
    assert "--meta_file demo_output/models/metadata.json" in readme  # the command this test runs
    _run(cmd, timeout=900)
    extra = {"metadata.json": ""}
    net = torch.jit.load(str(ts), map_location="cpu", _extra_files=extra)
    assert net(torch.zeros(1, 1, 32, 32, 32)).shape == (1, len(DEMO_CLASSES), 32, 32, 32)
    # the exported model describes the channels it outputs, named as the label server names them
    pred = json.loads(extra["metadata.json"])["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == len(DEMO_CLASSES)
    assert [pred["channel_def"][str(i)] for i in range(len(DEMO_CLASSES))] == DEMO_CLASSES


def _slicer_train_params(trainer_config: dict) -> dict:
    """What 3D Slicer's plugin posts from /info/'s trainer config: every list reduced to its first item."""
    return {k: (v[0] if isinstance(v, list) and v else v) for k, v in trainer_config.items()}


class _Server:
    """``monailabel start_server`` as ``make label-server`` runs it (``--app monailabel_app`` from the
    repository root), through ``python -m monailabel.main``: the venv's ``monailabel`` wrapper puts
    the folder holding the venv first on ``PYTHONPATH``, which would import another checkout's code."""

    def __init__(self, store: str, conf: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", "monailabel_app", "--studies", store]
        for key, value in conf.items():
            cmd += ["--conf", key, value]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        path = os.pathsep.join(p for p in (str(REPO), NETWORK_GUARD, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
        with open(log, "w") as fh:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()[-4000:]
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(2)
        raise AssertionError(f"server not up after {timeout} s\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=60)


@pytest.fixture
def demo_server(demo: Path, tmp_path: Path):
    store = str(demo / "store")
    conf = _label_server_conf(store)
    assert conf["model"] == str(demo / "models" / "model.pt")  # the model beside the store
    server = _Server(store, {**conf, "workspace": str(tmp_path / "workspace")}, tmp_path / "server.log")
    try:
        server.wait_up(timeout=900)
        yield server, conf
    finally:
        server.stop()


def test_label_server_on_the_demo_store_serves_the_demo_model_infers_and_trains(
    demo: Path, demo_server, tmp_path: Path
) -> None:
    server, conf = demo_server
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="newcomer")

    info = client.info()
    model = conf["models"]
    assert info["labels"] == DEMO_CLASSES[1:]  # the store's classes, not the bundle's defaults
    origin = json.loads((tmp_path / "workspace" / "bundles" / model / "models" / "model.origin.json").read_text())
    assert origin["source"] == os.path.realpath(demo / "models" / "model.pt")

    image_id = client.next_sample("first", {})["id"]
    label_file, params = client.infer(model, image_id, {})
    assert params["label_names"] == {n: i for i, n in enumerate(DEMO_CLASSES) if i}
    pred = np.asarray(nib.load(label_file).dataobj)
    assert set(np.unique(pred)) <= set(range(len(DEMO_CLASSES)))

    request = _slicer_train_params(info["trainers"][model]["config"])
    request.update({"max_epochs": 1, "patch_size": [32, 32, 32], "num_workers": 0})  # a test budget
    task = client.train_start(model, request)
    assert task["status"] in ("SUBMITTED", "RUNNING")
    deadline = time.monotonic() + 2400
    while (status := client.train_status())["status"] in ("SUBMITTED", "RUNNING"):
        assert time.monotonic() < deadline, server.log()[-4000:]
        time.sleep(5)
    details = "\n".join(status.get("details", []))
    assert status["status"] == "DONE", f"{details}\n{server.log()[-4000:]}"
    assert re.search(r"Epoch\[1\] Complete", details)
