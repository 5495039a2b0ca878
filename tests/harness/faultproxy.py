"""A fault-injecting TCP proxy for tests of S3 reads: 5xx bursts, dropped connections, outages.

The proxy runs in a **child process** bound to ``127.0.0.1`` (like the S3 server of
:mod:`radiobject_adapter.testing.s3server`, and for the same reason: TileDB-Py holds the
GIL during parts of a read, so a proxy thread in the test process could stall). It sits
between TileDB's S3 client and the S3 server and, per *new* TCP connection, either pipes
bytes both ways or injects a fault:

* ``pass``            pipe raw bytes both ways (nothing is parsed);
* ``fail_next(n)``    the next ``n`` new connections get ``HTTP/1.1 503 Slow Down`` (or
  another status) with ``Connection: close`` once their request head is read, then close;
* ``drop_next(n)``    the next ``n`` new connections are closed (reset) right after accept;
* ``stall_next(n)``   the next ``n`` new connections get no answer at all (a hung server);
* ``down()``          every new connection fails (reset, or a status) until ``pass``.

Switching into a fault mode also shuts down every connection being piped, so a client that
keeps connections alive (the AWS SDK does where the server allows it; moto's server closes
after each response) must reconnect and meets the fault. Only the first request head of a
fault connection is read; the fault log keeps its method, path (no query string) and
``Range``, never another header (``Authorization`` names the access key id). Piped
connections are never parsed, so chunked / ``aws-chunked`` uploads pass unchanged.

Control and statistics go through two small JSON files, so the child needs no socket of its
own: the parent writes a command with a sequence number into the control file (atomically)
and the child answers by writing that number, with its counters, into the stats file. Every
change of mode is therefore in force before :class:`FaultProxy` returns.

Command line (the control file holds e.g. ``{"seq": 1, "mode": "down"}``; :class:`FaultProxy`
starts this file as a script, which imports nothing but the standard library, where ``-m``
would first import the package with TileDB, MONAI and torch)::

    python -m tests.harness.faultproxy --listen-port 0 \\
        --target 127.0.0.1:9000 --control /tmp/ctl.json [--stats /tmp/ctl.json.stats]

Example:
    >>> from radiobject_adapter.testing import s3_server
    >>> from tests.harness.faultproxy import FaultProxy
    >>> with s3_server() as srv, FaultProxy(srv.port) as proxy:
    ...     # point S3Config(endpoint_override=proxy.endpoint_override, ...) at the proxy
    ...     proxy.fail_next(3)           # the next 3 connections get 503 Slow Down
    ...     ...                          # reads retry and succeed
    ...     assert proxy.stats()["status_503"] == 3
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FaultProxy", "FaultProxyError", "main"]

HOST = "127.0.0.1"
POLL_S = 0.005  # control-file poll interval of the child
HEAD_LIMIT = 64 * 1024  # largest request head read before answering a fault
IO_TIMEOUT_S = 5.0  # reading a request head / connecting to the target
DRAIN_LIMIT = 16 * 1024 * 1024  # bytes read (and discarded) after a fault answer
MAX_CONNECTIONS = 512  # concurrent connections; more are reset
FAULT_LOG_LIMIT = 200

_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Slow Down",
    504: "Gateway Timeout",
}
_CODES = {429: "TooManyRequests", 500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout"}
_COUNTERS = (
    "connections",  # accepted
    "piped",  # connected through to the target
    "faults",  # status + dropped + stalled + down (every connection that got a fault)
    "status",  # answered with an error status (fail_next / down with a status)
    "dropped",  # closed right after accept by drop_next
    "stalled",  # request head read, then no answer (stall_next)
    "down",  # failed because the proxy was down (reset or status)
    "killed",  # piped connections shut down by a switch into a fault mode
    "upstream_errors",  # target not reachable while piping
    "overflow",  # refused: too many concurrent connections
    "bytes_up",  # client -> target, piped
    "bytes_down",  # target -> client, piped
)


class FaultProxyError(RuntimeError):
    """The proxy could not be started or did not take a command in time."""


# ---------------------------------------------------------------------------------------------
# child process
# ---------------------------------------------------------------------------------------------
def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _read_head(sock: socket.socket) -> bytes:
    sock.settimeout(IO_TIMEOUT_S)
    buf = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in buf and len(buf) < HEAD_LIMIT:
            chunk = sock.recv(8192)
            if not chunk:
                break
            buf += chunk
    return buf


def _request_line(head: bytes) -> str:
    """``METHOD /path`` of a request head, query string dropped (it may carry a signature),
    plus `` [bytes=A-B]`` for a ranged GET; no other header is kept (``Authorization`` holds
    the access key id)."""
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1", "replace").split(" ")
    if len(parts) < 2:
        return " ".join(parts)[:80]
    text = f"{parts[0][:16]} {parts[1].split('?', 1)[0][:300]}"
    for raw in lines[1:]:
        name, _, value = raw.decode("latin-1", "replace").partition(":")
        if name.strip().lower() == "range":
            text += f" [{value.strip()[:60]}]"
    return text


def _error_response(status: int, code: str | None, method: str, seq: int) -> bytes:
    code = code or _CODES.get(status, "ServiceUnavailable" if status >= 500 else "Error")
    reason = "Slow Down" if code == "SlowDown" else _REASONS.get(status, "Error")
    if status == 503 and code != "SlowDown":
        reason = "Service Unavailable"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>injected by faultproxy</Message>"
        f"<RequestId>faultproxy-{seq}</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"x-amz-request-id: faultproxy-{seq}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


class _Pipe:
    """One piped connection: client <-> target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream

    def kill(self) -> None:
        _shutdown(self.client)
        _shutdown(self.upstream)


class _ProxyServer:
    def __init__(self, listen_port: int, target: tuple[str, int], control: str, stats: str) -> None:
        self.target = target
        self.control_path = control
        self.stats_path = stats
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.by_status: dict[int, int] = {}
        self.fault_log: list[dict[str, Any]] = []
        self.stall_log: list[float] = []  # seconds each stalled connection was held
        self.pipes: set[_Pipe] = set()
        self.live = 0
        # the state set by the control file
        self.seq = -1
        self.mode = "pass"
        self.fail_left = 0
        self.fail_status = 503
        self.fail_code: str | None = None
        self.drop_left = 0
        self.drop_reset = True
        self.stall_left = 0
        self.stall_s = 30.0
        self.down_status: int | None = None
        self.down_until: float | None = None  # monotonic time a timed outage ends
        self.down_s: float | None = None  # length of a timed outage not started yet
        self.down_code: str | None = None
        self.dirty = True
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, listen_port))
        self.listener.listen(128)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]

    # -- statistics ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            data: dict[str, Any] = dict(self.counts)
            data.update({f"status_{k}": v for k, v in sorted(self.by_status.items())})
            data.update(
                seq=self.seq,
                port=self.port,
                pid=os.getpid(),
                mode=self.mode,
                fail_left=self.fail_left,
                drop_left=self.drop_left,
                stall_left=self.stall_left,
                open_pipes=len(self.pipes),
                fault_log=list(self.fault_log),
                stall_seconds=list(self.stall_log),
            )
            self.dirty = False
        return data

    def write_stats(self) -> None:
        _write_json_atomic(self.stats_path, self.snapshot())

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n
            self.dirty = True

    def _log_fault(self, kind: str, request: str | None, status: int | None = None) -> None:
        # caller holds the lock
        self.counts["faults"] += 1
        if len(self.fault_log) >= FAULT_LOG_LIMIT:
            del self.fault_log[0]
        self.fault_log.append({"kind": kind, "status": status, "request": request, "t": round(time.time(), 3)})
        self.dirty = True

    # -- control --------------------------------------------------------------------------------
    def apply(self, cmd: dict[str, Any]) -> None:
        seq = int(cmd.get("seq", 0))
        with self.lock:
            if seq <= self.seq:
                return
            self.seq = seq
            if cmd.get("sync_only"):
                self.dirty = True
                return
            mode = str(cmd.get("mode", "pass"))
            if mode not in ("pass", "down"):
                mode = "pass"
            self.mode = mode
            self.down_status = cmd.get("down_status")
            self.down_code = cmd.get("down_code")
            seconds = cmd.get("down_s")
            self.down_s = float(seconds) if mode == "down" and seconds is not None else None
            # a timed outage runs from now, or from the first connection it fails
            start_now = self.down_s is not None and not cmd.get("from_first_connection")
            self.down_until = time.monotonic() + self.down_s if start_now and self.down_s is not None else None
            self.fail_left = max(0, int(cmd.get("fail_next", 0)))
            self.fail_status = int(cmd.get("status", 503))
            self.fail_code = cmd.get("code")
            self.drop_left = max(0, int(cmd.get("drop_next", 0)))
            self.drop_reset = bool(cmd.get("reset", True))
            self.stall_left = max(0, int(cmd.get("stall_next", 0)))
            self.stall_s = min(120.0, max(0.0, float(cmd.get("stall_s", 30.0))))
            armed = self.mode == "down" or self.fail_left > 0 or self.drop_left > 0 or self.stall_left > 0
            victims = list(self.pipes) if armed and cmd.get("kill_open", True) else []
            self.counts["killed"] += len(victims)
            self.dirty = True
        for pipe in victims:
            pipe.kill()

    def control_loop(self) -> None:
        parent = os.getppid()
        last = None
        while not self.stopping.is_set():
            if os.getppid() != parent:  # the test process died: do not outlive it
                self.stopping.set()
                break
            try:
                with open(self.control_path, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                text = None
            if text and text != last:
                last = text
                with contextlib.suppress(ValueError, TypeError):
                    self.apply(json.loads(text))
            if self.dirty:
                with contextlib.suppress(OSError):
                    self.write_stats()
            time.sleep(POLL_S)

    # -- connections ----------------------------------------------------------------------------
    def serve(self) -> None:
        threading.Thread(target=self.control_loop, name="control", daemon=True).start()
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                time.sleep(0.01)
                continue
            with self.lock:
                self.counts["connections"] += 1
                self.dirty = True
                if self.live >= MAX_CONNECTIONS:
                    self.counts["overflow"] += 1
                    _reset(client)
                    continue
                self.live += 1
            threading.Thread(target=self._handle_guarded, args=(client,), daemon=True).start()
        self.close()

    def _handle_guarded(self, client: socket.socket) -> None:
        try:
            self._handle(client)
        finally:
            with self.lock:
                self.live -= 1

    def _decide(self) -> tuple[str, Any]:
        with self.lock:
            if self.mode == "down" and self.down_until is None and self.down_s is not None:
                self.down_until = time.monotonic() + self.down_s  # first connection of the outage
            if self.mode == "down" and self.down_until is not None and time.monotonic() >= self.down_until:
                self.mode, self.down_until, self.down_s = "pass", None, None  # a timed outage is over
                self.dirty = True
            if self.mode == "down":
                return ("down", (self.down_status, self.down_code))
            if self.drop_left > 0:
                self.drop_left -= 1
                return ("drop", self.drop_reset)
            if self.stall_left > 0:
                self.stall_left -= 1
                return ("stall", self.stall_s)
            if self.fail_left > 0:
                self.fail_left -= 1
                return ("status", (self.fail_status, self.fail_code))
            return ("pass", None)

    def _handle(self, client: socket.socket) -> None:
        action, arg = self._decide()
        if action == "pass":
            self._pipe(client)
        elif action == "drop":
            with self.lock:
                self.counts["dropped"] += 1
                self._log_fault("drop", None)
            if arg:
                _reset(client)
            else:
                client.close()
        elif action == "stall":
            self._stall(client, arg)
        elif action == "down" and arg[0] is None:
            with self.lock:
                self.counts["down"] += 1
                self._log_fault("down", None)
            _reset(client)
        else:
            status, code = arg
            self._answer(client, int(status), code, down=action == "down")

    def _stall(self, client: socket.socket, seconds: float) -> None:
        """Read the request head, then send nothing until the client gives up (or ``seconds``)."""
        head = _request_line(_read_head(client))
        with self.lock:
            self.counts["stalled"] += 1
            self._log_fault("stall", head)
        deadline = time.monotonic() + seconds
        client.settimeout(0.1)
        try:
            while time.monotonic() < deadline and not self.stopping.is_set():
                try:
                    if not client.recv(65536):
                        break  # the client closed: its timeout fired
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            with self.lock:
                self.stall_log.append(round(seconds - max(0.0, deadline - time.monotonic()), 3))
                del self.stall_log[:-FAULT_LOG_LIMIT]
                self.dirty = True
            _reset(client)

    def _answer(self, client: socket.socket, status: int, code: str | None, down: bool) -> None:
        head = _request_line(_read_head(client))
        method = head.split(" ", 1)[0]
        with self.lock:
            self.counts["status"] += 1
            if down:
                self.counts["down"] += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            self._log_fault("down" if down else "status", head, status)
            n = self.counts["faults"]
        # counted before the answer leaves: a client that saw it sees it counted
        try:
            client.sendall(_error_response(status, code, method, n))
            _shutdown(client, socket.SHUT_WR)
            client.settimeout(1.0)
            drained = 0
            while drained < DRAIN_LIMIT:  # let the client read the answer before we close
                chunk = client.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        finally:
            client.close()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=IO_TIMEOUT_S)
        except OSError:
            self._count("upstream_errors")
            _reset(client)
            return
        client.settimeout(None)
        upstream.settimeout(None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream)
        with self.lock:
            self.pipes.add(pipe)
            self.counts["piped"] += 1
            self.dirty = True
        up = threading.Thread(target=self._pump, args=(client, upstream, "bytes_up"), daemon=True)
        up.start()
        self._pump(upstream, client, "bytes_down")
        up.join()
        with self.lock:
            self.pipes.discard(pipe)
            self.dirty = True
        client.close()
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, counter: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                self._count(counter, len(data))
        except OSError:
            _shutdown(src)  # a broken side ends both directions
        finally:
            _shutdown(dst, socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            pipes = list(self.pipes)
        for pipe in pipes:
            pipe.kill()
        with contextlib.suppress(OSError):
            self.write_stats()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process (``python -m tests.harness.faultproxy``)."""
    parser = argparse.ArgumentParser(description="Fault-injecting TCP proxy on 127.0.0.1 (for tests).")
    parser.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--target", required=True, help="HOST:PORT to pipe to (loopback only)")
    parser.add_argument("--control", required=True, help="JSON control file written by the parent")
    parser.add_argument("--stats", default=None, help="JSON stats file (default: CONTROL.stats)")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        parser.error("--target must be on loopback (127.0.0.1:PORT)")
    server = _ProxyServer(
        args.listen_port, ("127.0.0.1", int(port)), args.control, args.stats or args.control + ".stats"
    )

    def _stop(*_: object) -> None:
        server.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.write_stats()
    server.serve()
    return 0


# ---------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------
class FaultProxy:
    """Start the proxy child on ``127.0.0.1:<free port>`` in front of ``target_port``.

    Args:
        target_port: port of the server on 127.0.0.1 (e.g. ``S3Server.port``).
        listen_port: port to listen on (0: a free one, read back from the child).
        start_timeout / command_timeout: bounded waits for the child.

    Every mode method returns once the child has switched (it acknowledges the command),
    and starts from a clean state: ``fail_next(2)`` after ``drop_next(5)`` cancels the
    drops not yet served. Counters are cumulative; use :meth:`stats` before and after.
    """

    def __init__(
        self, target_port: int, listen_port: int = 0, start_timeout: float = 15.0, command_timeout: float = 5.0
    ) -> None:
        self.target_port = int(target_port)
        self.listen_port = int(listen_port)
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.port: int | None = None
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._seq = 0
        self._log: Any = None

    def __repr__(self) -> str:
        return f"FaultProxy(port={self.port}, target=127.0.0.1:{self.target_port}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def endpoint_override(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def control_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "control.json")

    @property
    def stats_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "stats.json")

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        if self.running:
            return self
        self._dir = tempfile.mkdtemp(prefix="radiobundles-faultproxy-")
        _write_json_atomic(self.control_path, {"seq": 0, "mode": "pass"})
        self._log = open(os.path.join(self._dir, "proxy.log"), "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                sys.executable,
                # run as a script: ``-m radiobject_adapter...`` would import the package
                # (TileDB, MONAI, torch: seconds); this file needs the standard library only
                os.path.abspath(__file__),
                "--listen-port",
                str(self.listen_port),
                "--target",
                f"{HOST}:{self.target_port}",
                "--control",
                self.control_path,
                "--stats",
                self.stats_path,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        atexit.register(self.stop)
        try:
            stats = self._wait_for(lambda s: s.get("seq", -1) >= 0, self.start_timeout, "start")
        except FaultProxyError:
            self.stop()
            raise
        self.port = int(stats["port"])
        return self

    def stop(self) -> None:
        """Stop the child (its connections close). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- commands -------------------------------------------------------------------------------
    def _read_stats(self) -> dict[str, Any]:
        try:
            with open(self.stats_path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def _wait_for(self, ok: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self._read_stats()
            if stats and ok(stats):
                return stats
            if not self.running:
                raise FaultProxyError(f"fault proxy exited during {what} (code {self._proc and self._proc.returncode})")
            if time.monotonic() > deadline:
                raise FaultProxyError(f"fault proxy did not acknowledge {what} within {timeout:.0f} s")
            time.sleep(0.005)

    def _command(self, **cmd: Any) -> dict[str, Any]:
        if not self.running:
            raise FaultProxyError("fault proxy is not running")
        self._seq += 1
        seq = self._seq
        _write_json_atomic(self.control_path, {"seq": seq, **cmd})
        return self._wait_for(lambda s: s.get("seq", -1) >= seq, self.command_timeout, f"command {cmd}")

    def passthrough(self) -> None:
        """Pipe every new connection to the target (the ``pass`` mode)."""
        self._command(mode="pass")

    def fail_next(self, n: int, status: int = 503, code: str | None = None, kill_open: bool = True) -> None:
        """The next ``n`` new connections get ``status`` once their request head is read.

        ``code`` is the S3 error code in the XML body (default: ``SlowDown`` for 503,
        ``InternalError`` for 500). The AWS SDK treats ``SlowDown`` apart from other 5xx:
        see the module docs of the tests for the measured retry timings.
        """
        self._command(mode="pass", fail_next=int(n), status=int(status), code=code, kill_open=kill_open)

    def drop_next(self, n: int, reset: bool = True, kill_open: bool = True) -> None:
        """The next ``n`` new connections are closed right after accept (RST, or FIN if not ``reset``)."""
        self._command(mode="pass", drop_next=int(n), reset=bool(reset), kill_open=kill_open)

    def stall_next(self, n: int, seconds: float = 30.0, kill_open: bool = True) -> None:
        """The next ``n`` new connections get no answer: the request head is read, then
        nothing is sent until the client closes (its ``request_timeout_ms``) or ``seconds``
        pass. ``stats()["stall_seconds"]`` lists how long each was held."""
        self._command(mode="pass", stall_next=int(n), stall_s=float(seconds), kill_open=kill_open)

    def down(
        self,
        status: int | None = None,
        seconds: float | None = None,
        code: str | None = None,
        from_first_connection: bool = False,
    ) -> None:
        """Fail every new connection until :meth:`passthrough`: reset it, or answer ``status``
        (S3 error ``code``, as in :meth:`fail_next`).

        With ``seconds`` the outage ends by itself, counted from now or, with
        ``from_first_connection``, from the first connection it fails (for clients that start
        at an unknown time, e.g. DataLoader workers). A test needs this when the recovery
        must happen *during* a read: a thread of the test process cannot act then, TileDB-Py
        holds the GIL for parts of a read.
        """
        self._command(
            mode="down", down_status=status, down_code=code, down_s=seconds, from_first_connection=from_first_connection
        )

    def set_mode(self, mode: str, n: int = 1, **kwargs: Any) -> None:
        """By name: ``"pass"``, ``"fail"`` (``fail_next(n)``), ``"drop"`` (``drop_next(n)``),
        ``"stall"`` (``stall_next(n)``), ``"down"``."""
        actions: dict[str, Callable[[], None]] = {
            "pass": self.passthrough,
            "fail": lambda: self.fail_next(n, **kwargs),
            "drop": lambda: self.drop_next(n, **kwargs),
            "stall": lambda: self.stall_next(n, **kwargs),
            "down": lambda: self.down(**kwargs),
        }
        if mode not in actions:
            raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(actions)}")
        actions[mode]()

    def stats(self) -> dict[str, Any]:
        """Counters of the child, current as of this call (a sync round trip): ``connections``,
        ``piped``, ``faults``, ``status``, ``status_<code>``, ``dropped``, ``stalled``, ``down``, ``killed``,
        ``upstream_errors``, ``bytes_up``, ``bytes_down``, ``fault_log`` (last faults with the
        request line, no headers), ``stall_seconds``, ``mode``, ``fail_left``, ``drop_left``,
        ``stall_left``."""
        return self._command(sync_only=True)


if __name__ == "__main__":
    sys.exit(main())
