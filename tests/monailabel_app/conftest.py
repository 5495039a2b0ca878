"""Fixtures for the MONAI Label app: small synthetic stores and a real server on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
import requests

import monailabel_app
from radiobject_adapter import ingest_niftis
from radiobject_adapter.synthetic import make_ct_dataset

VENV_BIN = os.path.dirname(sys.executable)
APP_MAIN = os.path.join(os.path.dirname(monailabel_app.__file__), "main.py")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(monailabel_app.__file__)))
NETWORK_GUARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "network_guard")
N_SUBJECTS = 6
N_LABELLED = 2  # case_000 and case_001 come with ground truth; the others are left to annotate


@dataclass(frozen=True)
class LabelProject:
    """A store with ``N_SUBJECTS`` CT images, ground truth for the first ``N_LABELLED``, and the
    withheld labels of the others (what an annotator would draw) in ``held``."""

    root: str
    store: str
    held: dict[str, str]
    images: dict[str, str]


def make_label_project(root: str, seed: int = 3) -> LabelProject:
    ds = make_ct_dataset(
        os.path.join(root, "nifti"), n_subjects=N_SUBJECTS, shape_range=((36, 44), (36, 44), (24, 30)), seed=seed
    )
    held_dir = os.path.join(root, "held")
    os.makedirs(held_dir)
    held = {}
    for sid, path in list(zip(ds.subject_ids, ds.labels))[N_LABELLED:]:
        held[sid] = shutil.move(path, os.path.join(held_dir, os.path.basename(path)))
    store = os.path.join(root, "store")
    report = ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, tile_extent=16, progress=False)
    assert report.ok, report.summary()
    return LabelProject(root, store, held, dict(zip(ds.subject_ids, ds.images)))


@pytest.fixture(scope="session")
def label_project_maker():
    """:func:`make_label_project`, for module-scoped fixtures of other modules."""
    return make_label_project


@pytest.fixture
def project(tmp_path) -> LabelProject:
    return make_label_project(str(tmp_path))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabelServer:
    """``monailabel start_server`` in a subprocess (its own process group) on a loopback port."""

    studies: str
    workdir: str
    conf: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_dir(self) -> str:
        return os.path.join(self.workdir, "app")

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "server.log")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def network_attempts(self) -> list[str]:
        """Connections off this machine that the server's processes tried (and were refused)."""
        return [line for line in self.log().splitlines() if "NETWORK-GUARD" in line]

    def start(self, timeout: float = 180.0) -> LabelServer:
        # the app folder holds only main.py; MONAI Label writes its logs/ and model/ next to it
        os.makedirs(self.app_dir, exist_ok=True)
        shutil.copy(APP_MAIN, self.app_dir)
        # what the `monailabel` launcher runs, without its PYTHONPATH: it puts the folder above the
        # venv first, which is another checkout when a worktree borrows a venv; the code under
        # test (this checkout's packages) comes first here
        cmd = [
            sys.executable,
            "-m",
            "monailabel.main",
            "start_server",
            "--app",
            self.app_dir,
            "--studies",
            self.studies,
        ]
        for key, value in self.conf.items():
            cmd += ["--conf", key, value]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MONAI_LABEL_SESSION_PATH": os.path.join(self.workdir, "sessions"),
            # every process of the server (training, scoring too) refuses connections off this machine
            "PYTHONPATH": os.pathsep.join(p for p in (NETWORK_GUARD, REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p),
        }
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"server not up after {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # the server and the training/scoring processes it started share its process group
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def label_server_factory(tmp_path_factory):
    """``start(studies, conf)`` -> a running :class:`LabelServer`; all are stopped at the end."""
    servers: list[LabelServer] = []

    def start(studies: str, conf: dict[str, str]) -> LabelServer:
        server = LabelServer(studies, str(tmp_path_factory.mktemp("server")), conf=conf)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def store_server(tmp_path_factory):
    """One server over a synthetic store, shared by the tests of a module."""
    root = str(tmp_path_factory.mktemp("label_project"))
    proj = make_label_project(root)
    server = LabelServer(
        proj.store,
        root,
        conf={
            "models": "ct_segmentation_3d",
            "workspace": os.path.join(root, "workspace"),
            "epistemic_samples": "2",
        },
    ).start()
    try:
        yield server, proj
    finally:
        server.stop()
