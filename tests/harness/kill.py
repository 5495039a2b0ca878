"""Kill-point tests: run work in a fresh process, SIGKILL it at a chosen moment, check what is left.

Interrupted work (ingest, a label save, training) must never leave a store or a checkpoint that
reads as valid but is not. Tests prove it by killing a worker process many times at varying
moments. Starting a Python process that imports MONAI, torch and TileDB takes seconds here,
most of the cost of a kill point, so :class:`ForkServer` starts one *server* process that
imports the heavy modules once, before any TileDB context or torch thread exists, and forks
one worker per run. A forked worker is an ordinary process with its own TileDB context (none
is inherited: the server never made one) and is killed with ``SIGKILL`` like any other.

Three ways to choose the moment, all reproducible:

* from outside: :meth:`Worker.kill_after` sleeps a delay, then sends ``SIGKILL`` (the kill can
  land anywhere, inside libtiledb's or torch's C++ code too);
* from inside: :func:`arm_kill` makes the worker ``SIGKILL`` itself at the ``n``-th Python
  function call, or right after the ``k``-th return from a named function (say, the moment a
  TileDB fragment has committed but the metadata that goes with it has not). Nothing is
  replaced or faked: the code under test runs unchanged until the process dies;
* at a store write: :func:`arm_store_kill` wraps the TileDB-Py calls that change a store
  (array/group creation, fragment writes, metadata puts and deletes, group adds/removes, the
  commits of write-mode arrays and groups, consolidation, folder removal) so that the process
  dies just before the ``n``-th of them, and logs each one; a run without a kill counts them,
  and ``n = 1..N`` enumerates every state a writer can leave (exhaustive, not sampled).

Example:
    >>> with ForkServer(preload=["monailabel_app.lib.datastore"], modules={"t": __file__}) as server:
    ...     worker = server.spawn("t:save_labels", log=str(tmp / "w.log"), store=store)
    ...     killed = worker.kill_after(0.2)   # True: died by SIGKILL; False: finished first
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["STORE_WRITE_OPS", "CallCounter", "ForkServer", "Worker", "arm_kill", "arm_store_kill", "read_op_log"]

_READY_TIMEOUT_S = 600.0


# ---------------------------------------------------------------------------------------------
# inside a worker
# ---------------------------------------------------------------------------------------------
def _die() -> None:
    sys.setprofile(None)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # SIGKILL is delivered before this returns; never reached


def arm_kill(at_call: int | None = None, after_return_of: str | None = None, occurrence: int = 1) -> None:
    """``SIGKILL`` this process at a precise point of what it runs next (main thread).

    Args:
        at_call: die at the ``at_call``-th Python or C function call from now.
        after_return_of: die right after the ``occurrence``-th return from a function, before
            its caller runs another line: a Python function whose ``"<file>:<qualified name>"``
            ends with this (``"DenseArrayImpl.__setitem__"``, ``"serialization.py:save"``), or
            a C function whose qualified name does (``"write_record"``, torch's writer of one
            tensor into a checkpoint file).
    """
    if (at_call is None) == (after_return_of is None):
        raise ValueError("give exactly one of at_call and after_return_of")
    seen = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if at_call is not None:
            if event in ("call", "c_call"):
                seen += 1
                if seen >= at_call:
                    _die()
            return
        if event == "return":
            name = f"{frame.f_code.co_filename}:{frame.f_code.co_qualname}"
        elif event == "c_return":
            name = getattr(arg, "__qualname__", "") or ""
        else:
            return
        if name.endswith(after_return_of):
            seen += 1
            if seen >= occurrence:
                _die()

    sys.setprofile(profile)


def _store_write_ops() -> list[tuple[str, Any, str, str]]:
    """``(label, owner, attribute, kind)`` of the TileDB-Py calls that change a store; kind is
    ``plain``, ``static``, ``class`` or ``commit`` (a ``close`` that writes only in write mode)."""
    import tiledb
    import tiledb.array
    import tiledb.dense_array
    import tiledb.group
    import tiledb.metadata
    import tiledb.sparse_array

    return [
        ("array.create", tiledb.array.Array, "create", "class"),
        ("group.create", tiledb.group.Group, "create", "static"),
        ("dense.write", tiledb.dense_array.DenseArrayImpl, "__setitem__", "plain"),
        ("sparse.write", tiledb.sparse_array.SparseArrayImpl, "__setitem__", "plain"),
        ("meta.put", tiledb.metadata.Metadata, "__setitem__", "plain"),
        ("meta.delete", tiledb.metadata.Metadata, "__delitem__", "plain"),
        ("group.add", tiledb.group.Group, "add", "plain"),
        ("group.remove", tiledb.group.Group, "remove", "plain"),
        ("group.commit", tiledb.group.Group, "close", "commit"),
        ("array.commit", tiledb.array.Array, "close", "commit"),
        ("consolidate", tiledb, "consolidate", "module"),
        ("vacuum", tiledb, "vacuum", "module"),
        ("group.consolidate_metadata", tiledb.group.Group, "consolidate_metadata", "static"),
        ("group.vacuum_metadata", tiledb.group.Group, "vacuum_metadata", "static"),
        ("vfs.remove_dir", tiledb.VFS, "remove_dir", "plain"),
        ("vfs.remove_file", tiledb.VFS, "remove_file", "plain"),
    ]


STORE_WRITE_OPS = (
    "array.create, group.create, dense.write, sparse.write, meta.put, meta.delete, group.add, group.remove, "
    "group.commit, array.commit, consolidate, vacuum, group.consolidate_metadata, group.vacuum_metadata, "
    "vfs.remove_dir, vfs.remove_file"
)


def arm_store_kill(kill_at: int | None, log: str | None = None) -> None:
    """Count this process's store writes (see :data:`STORE_WRITE_OPS`); ``SIGKILL`` it just
    before the ``kill_at``-th (never, when ``None``: a counting run). Each write that goes
    ahead is appended to ``log`` (one line, ``label``), so the parent learns ``N`` and what
    each kill point interrupted. Only a forked worker should call this: it patches TileDB-Py's
    classes for the rest of the process's life.
    """
    seen = depth = 0
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log else None

    def before(label: str) -> None:
        nonlocal seen
        seen += 1
        if kill_at is not None and seen >= kill_at:
            _die()
        if fd is not None:
            os.write(fd, f"{label}\n".encode())  # one write(): a kill leaves whole lines

    for label, owner, attr, kind in _store_write_ops():
        original = getattr(owner, attr)  # for "class": bound to the owner, so called without cls
        skip_first = kind == "class"

        def wrapped(
            *args: Any,
            _original: Any = original,
            _label: str = label,
            _kind: str = kind,
            _skip: bool = skip_first,
            **kw: Any,
        ) -> Any:
            nonlocal depth
            if depth == 0 and (_kind != "commit" or getattr(args[0], "mode", "r") != "r"):
                before(_label)
            depth += 1  # calls made inside this one (a put deletes the old value first) are its own
            try:
                return _original(*(args[1:] if _skip else args), **kw)
            finally:
                depth -= 1

        if kind == "class":
            setattr(owner, attr, classmethod(wrapped))
        elif kind == "static":
            setattr(owner, attr, staticmethod(wrapped))
        else:
            setattr(owner, attr, wrapped)


def read_op_log(path: str) -> list[str]:
    """The store writes an :func:`arm_store_kill` log lists, in order."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip()]


class CallCounter:
    """Counts Python and C function calls of the main thread in a ``with`` block (to spread
    :func:`arm_kill` ``at_call`` points over a piece of work): ``calls`` after the block."""

    def __enter__(self) -> CallCounter:
        self.calls = 0

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event in ("call", "c_call"):
                self.calls += 1

        sys.setprofile(profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


# ---------------------------------------------------------------------------------------------
# the server process (this file run as a script: only the standard library before the preloads)
# ---------------------------------------------------------------------------------------------
def _load(modules: dict[str, Any], target: str) -> Any:
    name, _, func = target.partition(":")
    if name not in modules:
        import importlib

        modules[name] = importlib.import_module(name)
    return getattr(modules[name], func)


def _serve(preload: Sequence[str], files: Mapping[str, str]) -> None:
    import importlib
    import importlib.util
    import traceback

    modules: dict[str, Any] = {}
    for name in preload:
        importlib.import_module(name)
    for alias, path in files.items():
        spec = importlib.util.spec_from_file_location(f"_killed_{alias}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[alias] = module
    out = sys.stdout
    out.write(json.dumps({"ready": True, "threads": len(os.listdir("/proc/self/task"))}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the worker: its own output file, then the target, then exit
            code = 1
            try:
                fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.setsid()  # a SIGINT to the test's terminal must not reach it
                _load(modules, request["target"])(**request["kwargs"])
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# the test process
# ---------------------------------------------------------------------------------------------
class Worker:
    """One forked run; its exit code is ``-9`` when it died by ``SIGKILL``."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.exit: int | None = None

    def wait(self, timeout: float = 600.0) -> int:
        """Wait for the worker to end; returns its exit code (raises ``TimeoutError``)."""
        if self.exit is None:
            reply = self.server._reply(timeout)
            if reply.get("pid") != self.pid or "exit" not in reply:
                raise RuntimeError(f"fork server answered {reply} while waiting for worker {self.pid}")
            self.exit = int(reply["exit"])
        return self.exit

    def poll(self) -> int | None:
        """The exit code if the worker has ended, else ``None`` (does not block)."""
        if self.exit is None and self.server._readable(0):
            return self.wait()
        return self.exit

    def kill(self) -> bool:
        """``SIGKILL`` now; True if that is what ended the worker (False: it had finished)."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.wait() == -signal.SIGKILL

    def kill_after(self, delay: float) -> bool:
        """``SIGKILL`` after ``delay`` seconds unless it ends first; True if the kill landed."""
        if self.server._readable(delay):
            self.wait()
            return False
        return self.kill()


class ForkServer:
    """A process that imports modules once and forks a :class:`Worker` per :meth:`spawn`.

    Args:
        preload: modules to import in the server (the heavy ones: MONAI, torch, TileDB).
        modules: ``alias -> file`` of modules loaded from a path (a test file), whose functions
            :meth:`spawn` targets as ``"alias:function"``.
        env: environment of the server and its workers (default: this process's).
    """

    def __init__(
        self,
        preload: Sequence[str] = (),
        modules: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._worker: Worker | None = None
        args = json.dumps({"preload": list(preload), "files": dict(modules or {})})
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(env) if env is not None else None,
        )
        ready = self._reply(_READY_TIMEOUT_S)
        if not ready.get("ready"):
            raise RuntimeError(f"fork server did not start: {ready}")
        # forking a process with threads (a TileDB pool, torch's workers) could deadlock a worker
        self.threads = int(ready["threads"])

    def _readable(self, timeout: float) -> bool:
        return bool(select.select([self.proc.stdout], [], [], timeout)[0])

    def _reply(self, timeout: float) -> dict[str, Any]:
        if not self._readable(timeout):
            raise TimeoutError(f"no answer from the fork server in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server exited with {self.proc.wait()}")
        return json.loads(line)

    def spawn(self, target: str, log: str, **kwargs: Any) -> Worker:
        """Fork a worker that runs ``target(**kwargs)`` (JSON-able) with output to ``log``;
        one at a time (wait for or kill the previous one first)."""
        if self._worker is not None and self._worker.exit is None:
            raise RuntimeError(f"worker {self._worker.pid} is still running")
        self.proc.stdin.write(json.dumps({"target": target, "log": log, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        self._worker = Worker(self, int(self._reply(60.0)["pid"]))
        return self._worker

    def close(self) -> None:
        """Stop the server, killing a worker still running (a test that failed or timed out)."""
        if self._worker is not None and self._worker.exit is None:
            try:
                os.kill(self._worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # run as a script: this folder must not shadow top-level modules
    # the repository root, so that test files loaded by path can import ``tests.harness``
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    _config = json.loads(sys.argv[1])
    _serve(_config["preload"], _config["files"])
