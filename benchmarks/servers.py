"""Long-lived contender processes driven over pipes (one JSON line per request/reply).

Each contender runs in its own server process (``python -m benchmarks.worker serve``), so
its process-wide settings stay its own and its memory is measured alone, while the
orchestrator can interleave work across contenders: a round of timing windows visits every
contender in a shuffled order, so that load from other users of a shared machine is spread
over all of them instead of falling on whichever ran at a bad moment.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Server:
    def __init__(self, names: list[str], mode: str, data_root: str, log_path: str) -> None:
        self.names = names
        self.log = open(log_path, "a")  # noqa: SIM115 (kept open for the server's lifetime)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.worker",
                "serve",
                "--contenders",
                ",".join(names),
                "--mode",
                mode,
                "--data",
                data_root,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=REPO,
            start_new_session=True,
        )

    def _readline(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"server {self.names} gave no answer in {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server {self.names} exited (code {self.proc.poll()})")
        return line

    def wait_ready(self, timeout: float) -> None:
        json.loads(self._readline(timeout))

    def call(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._readline(timeout))

    def ask_quit(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
        except OSError:  # already gone
            pass

    def close(self, ask: bool = True) -> None:
        if ask:
            self.ask_quit()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()

    def kill(self) -> None:
        """Kill the server and whatever it forked (DataLoader workers): its own process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class Pool:
    """Servers for a list of contenders: one each (``isolate``) or one shared."""

    def __init__(self, names: list[str], mode: str, data_root: str, log_path: str, isolate: bool = True) -> None:
        self.data_root = data_root
        self.servers: dict[str, Server] = {}
        self.dead: dict[str, str] = {}
        groups = [[n] for n in names] if isolate else [names]
        for g in groups:
            srv = Server(g, mode, data_root, log_path)
            for n in g:
                self.servers[n] = srv
        for srv in self.unique():
            srv.wait_ready(600)

    def unique(self) -> list[Server]:
        return list({id(s): s for s in self.servers.values()}.values())

    def alive(self, name: str) -> bool:
        return name in self.servers and name not in self.dead

    def call(self, name: str, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self.alive(name):
            return {"error": self.dead.get(name, "no server")}
        srv = self.servers[name]
        try:
            return srv.call({**req, "contender": name}, timeout)
        except Exception as err:  # hung or crashed: kill it, the others go on
            why = f"{type(err).__name__}: {err}"
            srv.kill()
            for n, s in self.servers.items():
                if s is srv:
                    self.dead[n] = why
            return {"error": why}

    def close(self) -> None:
        live = [srv for srv in self.unique() if srv.proc.poll() is None]
        for srv in live:  # ask all first, then wait: they shut down in parallel
            srv.ask_quit()
        for srv in live:
            srv.close(ask=False)
