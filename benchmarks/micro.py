"""Micro benchmarks, interleaved across contenders so that load from other users of the
machine hits every contender alike: random 64³ patch reads, foreground-sampled vs uniform
dataset items, full-volume reads and single axial slices.

Each contender lives in its own server process (:func:`benchmarks.worker.serve`); requests go
round-robin in small groups, in a shuffled order each round, with the same positions for all.
Reported: wall-clock p50/p95 and CPU time per read (CPU time is what the read costs; the wall
clock adds waiting for a core on a shared machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.servers import Pool


def _stats(samples: list[list[float]]) -> dict[str, Any]:
    if not samples:
        return {}
    a = np.asarray(samples, dtype=float)
    return {
        "p50_ms": 1e3 * float(np.percentile(a[:, 0], 50)),
        "p95_ms": 1e3 * float(np.percentile(a[:, 0], 95)),
        "cpu_mean_ms": 1e3 * float(a[:, 1].mean()),
        "n": len(a),
    }


def run_micro(
    cfg: BenchConfig,
    pool: Pool,
    contenders: list[Any],
    log: Callable[[str], None] = print,
    set_name: str = "large",
) -> dict[str, Any]:
    """Interleaved micro benchmarks on the servers of ``pool`` (see module docstring)."""
    from benchmarks.synth import DataSet

    ds = DataSet(pool.data_root, cfg.dataset(set_name))
    shape, n_sub = ds.spec.shape, ds.spec.n_subjects
    names = [c.name for c in contenders if pool.alive(c.name)]
    by_name = {c.name: c for c in contenders}
    out: dict[str, Any] = {n: {} for n in names}
    failed: set[str] = set()
    started = time.perf_counter()

    def call(name: str, req: dict[str, Any]) -> dict[str, Any] | None:
        if name in failed:
            return None
        rep = pool.call(name, {**req, "set": set_name}, timeout=max(120.0, cfg.contender_timeout_s))
        if "error" in rep:
            out[name]["error"] = rep["error"]
            failed.add(name)
            log(f"    micro {name}: {rep['error']}")
            return None
        return rep

    for n in names:  # open arrays/datasets outside any timing
        call(n, {"op": "open"})
    log(f"  micro: {len(names)} contenders opened in {time.perf_counter() - started:.1f} s")
    rng = np.random.default_rng(1234)
    size = list(cfg.patch)
    digests: dict[str, dict[int, float]] = {}

    def interleave(metric: str, requests: list[dict[str, Any]], who: list[str], tag: str = "") -> None:
        acc: dict[str, list] = {n: [] for n in who}
        for k, req in enumerate(requests):
            order = list(who)
            rng.shuffle(order)
            for n in order:
                rep = call(n, req)
                if rep is None:
                    continue
                acc[n].extend(rep["t"])
                for j, t in enumerate(rep["t"]):
                    if len(t) > 2 and t[2]:
                        digests.setdefault(f"{metric}{tag}:{k}:{j}", {})[n] = t[2]
        for n in who:
            out[n][metric] = _stats([t[:2] for t in acc[n]])

    # random patches: same positions for everyone, groups of 10
    def positions(k: int) -> list[tuple[int, list[int]]]:
        return [
            (int(rng.integers(n_sub)), [int(rng.integers(0, max(1, d - p + 1))) for d, p in zip(shape, size)])
            for _ in range(k)
        ]

    fast = [n for n in names if not by_name[n].slow_patch]
    slow = [n for n in names if by_name[n].slow_patch]
    # warm-up: three reads in every volume (a process's first read of a volume also loads its
    # tile offsets, and its first reads grow the allocator), none of them timed
    warm = [
        {"op": "patch", "where": [(v, w) for _ in range(3) for v, (_, w) in enumerate(positions(n_sub))], "size": size}
    ]
    interleave("warmup", warm, fast)
    reqs = [{"op": "patch", "where": positions(10), "size": size} for _ in range(max(1, cfg.micro_reads // 10))]
    interleave("patch", reqs, fast)
    if slow:  # the first position of the first groups: same voxels, so the digests compare
        slow_reqs = [{"op": "patch", "where": r["where"][:1], "size": size} for r in reqs[: cfg.micro_slow_reads]]
        interleave("patch", slow_reqs, slow)
    log("  micro: patches done")
    # dataset items: foreground-driven vs uniform positions (image + label patch each)
    item_names = [n for n in names if by_name[n].supports_items]
    reqs = []
    for _ in range(max(2, cfg.micro_reads // 20)):
        reqs += [{"op": "item", "foreground": False, "n": 5}, {"op": "item", "foreground": True, "n": 5}]
    acc_items: dict[str, dict[bool, list]] = {n: {False: [], True: []} for n in item_names}
    call_items = [{"op": "item", "foreground": fg, "n": 2} for fg in (False, True)]
    for n in item_names:  # warm-up (foreground index, first arrays)
        for r in call_items:
            call(n, r)
    for req in reqs:
        order = list(item_names)
        rng.shuffle(order)
        for n in order:
            rep = call(n, req)
            if rep is not None:
                acc_items[n][req["foreground"]].extend(t[:2] for t in rep["t"])
    for n in item_names:
        out[n]["item_random"] = _stats(acc_items[n][False])
        out[n]["item_foreground"] = _stats(acc_items[n][True])
    log("  micro: items done")
    # axial slices and full volumes
    axial = [
        {"op": "axial", "where": [(int(rng.integers(n_sub)), int(rng.integers(shape[2]))) for _ in range(5)]}
        for _ in range(max(1, cfg.micro_reads // 40))
    ]
    interleave("axial", axial, names)
    full = [{"op": "full", "subjects": [int(rng.integers(n_sub))]} for _ in range(cfg.micro_slow_reads)]
    interleave("full", full, names)
    log("  micro: slices and full volumes done")
    # correctness: every contender must return the same voxels for the same request
    mismatches = sorted(key for key, vals in digests.items() if len({round(v, 3) for v in vals.values()}) > 1)
    out["_checks"] = {"compared": len(digests), "mismatches": mismatches[:20]}
    return out
