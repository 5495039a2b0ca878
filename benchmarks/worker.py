"""Subprocess entry points: ``serve`` (a contender server: prepare its layout, run its loader
in timing windows, time micro reads; one JSON line in, one JSON line out) and ``levers``.

Each contender runs in its own process (unless the mode asks otherwise), so process-wide
settings (ours-v0's TileDB settings, radiobject's global context)
never leak into another contender, and peak memory is that contender's own.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import traceback
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _datasets(cfg, data_root: str) -> dict[str, Any]:
    from benchmarks.synth import DataSet

    return {spec.name: DataSet(data_root, spec) for spec in cfg.datasets}


class _LoaderSession:
    """One live DataLoader of a contender, timed in windows on request (interleaved runs)."""

    def __init__(self, contender, ds, cfg, workers: int, length: int) -> None:
        from benchmarks.measure import MemoryMonitor, _batches, check_batch

        self.cfg, self.workers = cfg, workers
        self.mon = MemoryMonitor().__enter__()
        t0 = time.perf_counter()
        self.loader = contender.make_loader(ds, cfg, workers, length)
        self.stream = _batches(lambda: iter(self.loader))
        first = next(self.stream)
        self.first_s = time.perf_counter() - t0
        check_batch(first, cfg.batch_size, cfg.patch)
        # with worker processes, the batches the other workers made while the first was awaited
        # come for free: take them before timing (steady state from then on)
        for _ in range(max(cfg.warmup_batches - 1, workers - 1)):
            next(self.stream)
        self.check = check_batch

    def window(self, max_batches: int, min_batches: int, budget_s: float) -> dict:
        from benchmarks.measure import tree_cpu_s

        if self.workers:  # whole rounds of the workers
            min_batches = -(-max(min_batches, self.workers) // self.workers) * self.workers
        times: list[float] = []
        cpu0, mon0 = tree_cpu_s(), self.mon.cpu_s
        start = time.perf_counter()
        while len(times) < max_batches and (len(times) < min_batches or time.perf_counter() - start < budget_s):
            t = time.perf_counter()
            b = next(self.stream)
            times.append(time.perf_counter() - t)
        self.check(b, self.cfg.batch_size, self.cfg.patch)
        cpu = tree_cpu_s() - cpu0 - (self.mon.cpu_s - mon0)  # the memory monitor's polling left out
        return {"times": times, "cpu_s": cpu, "loadavg": os.getloadavg()[0]}

    def close(self) -> dict:
        self.stream.close()
        del self.stream, self.loader
        gc.collect()
        self.mon.__exit__(None, None, None)
        return self.mon.result()


def serve(names: list[str], mode: str, data_root: str) -> None:
    """Server: prepare layouts, run loader windows, time micro reads, on request.

    One JSON request per line on stdin, one JSON reply per line on stdout.
    """
    import numpy as np

    from benchmarks import loaders
    from benchmarks.config import MODES

    cfg = MODES[mode]
    sets = _datasets(cfg, data_root)
    hosted = {n: loaders.get(n) for n in names}
    for c in hosted.values():
        c.warm_imports()
    if len(hosted) == 1:
        next(iter(hosted.values())).setup_process()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    opened: set[tuple[str, str]] = set()
    sessions: dict[str, _LoaderSession] = {}

    def digest(a: Any) -> float:
        a = np.asarray(a)
        return float(a.astype(np.int64).sum()) + 0.001 * float(np.prod(a.shape))

    def timed(fn, *args) -> tuple[float, float, float]:
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn(*args)
        wall = time.perf_counter() - t0
        return wall, time.process_time() - c0, digest(out) if not isinstance(out, dict) else 0.0

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "quit":
                break
            c = hosted[req["contender"]]
            ds = sets[req.get("set", "large")]
            if op == "prepare":
                info = c.prepare(ds, cfg, log=_log)
                reply: dict[str, Any] = {"info": info, "bytes": c.bytes_on_disk(ds)}
            elif op == "loader_start":
                sessions[c.name] = _LoaderSession(c, ds, cfg, int(req["workers"]), int(req["length"]))
                reply = {"first_batch_s": sessions[c.name].first_s}
            elif op == "loader_window":
                reply = sessions[c.name].window(int(req["max"]), int(req["min"]), float(req["budget"]))
            elif op == "loader_stop":
                s = sessions.pop(c.name, None)
                reply = s.close() if s is not None else {}
            else:
                if (c.name, ds.spec.name) not in opened:
                    c.open_micro(ds)
                    opened.add((c.name, ds.spec.name))
                if op == "open":
                    reply = {}
                elif op == "patch":
                    reply = {"t": [timed(c.read_patch, s, tuple(st), tuple(req["size"])) for s, st in req["where"]]}
                elif op == "full":
                    reply = {"t": [timed(c.read_full, s) for s in req["subjects"]]}
                elif op == "axial":
                    reply = {"t": [timed(c.read_axial, s, z) for s, z in req["where"]]}
                elif op == "item":
                    reply = {"t": [timed(c.item, bool(req["foreground"])) for _ in range(int(req["n"]))]}
                else:
                    raise ValueError(f"unknown op {op!r}")
        except Exception as err:
            if op == "loader_start":
                sessions.pop(req["contender"], None)
            reply = {"error": f"{type(err).__name__}: {err}"[:500], "traceback": traceback.format_exc()[-2000:]}
        print(json.dumps(reply), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["serve", "levers"])
    p.add_argument("--contenders", default="")
    p.add_argument("--mode", default="quick")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    names = [n for n in a.contenders.split(",") if n]
    if a.what == "serve":
        serve(names, a.mode, a.data)
    else:
        from benchmarks import levers

        levers.run(a.mode, a.data, a.out)


if __name__ == "__main__":
    main()
