"""Orthanc with its DICOMweb plugin on 127.0.0.1, for tests, the DICOM demo and ``make orthanc``.

The configuration is ``configs/orthanc/orthanc.json`` of the repository with the storage
folder, ports and plugin path filled in; remote access is off, so only loopback clients are
served. Needs the Debian packages ``orthanc`` and ``orthanc-dicomweb``.

Example:
    >>> with orthanc_server() as srv:
    ...     print(srv.dicomweb_url)          # http://127.0.0.1:<port>/dicom-web

Command line (foreground, Ctrl-C stops it)::

    python -m radiobject_adapter.testing.orthanc --port 8042 --storage .orthanc
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ORTHANC_CONFIG", "OrthancServer", "find_dicomweb_plugin", "orthanc_available", "orthanc_server"]

ORTHANC_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "orthanc" / "orthanc.json"
_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")


def find_dicomweb_plugin() -> str | None:
    for folder in _PLUGIN_DIRS:
        for name in ("libOrthancDicomWeb.so",):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def orthanc_available() -> bool:
    """``True`` when the Orthanc binary and its DICOMweb plugin are installed."""
    return shutil.which("Orthanc") is not None and find_dicomweb_plugin() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    port: int
    storage: str
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"


def write_config(storage: str, port: int, path: str) -> str:
    plugin = find_dicomweb_plugin()
    if plugin is None:
        raise FileNotFoundError("Orthanc's DICOMweb plugin is not installed: apt-get install orthanc-dicomweb")
    text = ORTHANC_CONFIG.read_text()
    for key, value in {"@STORAGE@": storage, "@HTTP_PORT@": str(port), "@DICOM_PORT@": str(_free_port())}.items():
        text = text.replace(key, value)
    Path(path).write_text(text.replace("@PLUGIN@", plugin))
    return path


@contextlib.contextmanager
def orthanc_server(
    port: int | None = None, storage: str | None = None, timeout: float = 60.0
) -> Iterator[OrthancServer]:
    """Start Orthanc on 127.0.0.1 (a free port by default), wait until DICOMweb answers, stop it after."""
    if shutil.which("Orthanc") is None:
        raise FileNotFoundError("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="orthanc-") as tmp:
        storage = storage or os.path.join(tmp, "db")
        os.makedirs(storage, exist_ok=True)
        config = write_config(os.path.abspath(storage), port, os.path.join(tmp, "orthanc.json"))
        log = open(os.path.join(tmp, "orthanc.log"), "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(["Orthanc", config], stdout=log, stderr=subprocess.STDOUT)
        server = OrthancServer(port, storage, proc)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{server.dicomweb_url}/studies", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"Orthanc did not answer on {server.url} within {timeout} s") from None
                    time.sleep(0.3)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Orthanc + DICOMweb on 127.0.0.1 until interrupted")
    parser.add_argument("--port", type=int, default=8042)
    parser.add_argument("--storage", default=".orthanc")
    args = parser.parse_args()
    with orthanc_server(args.port, args.storage) as srv:
        print(f"Orthanc: {srv.url}  DICOMweb: {srv.dicomweb_url}  storage: {os.path.abspath(args.storage)}")
        with contextlib.suppress(KeyboardInterrupt):
            srv.process.wait()


if __name__ == "__main__":
    main()
