"""Run the loader-throughput experiment: ``python -m benchmarks.run --mode quick|full``.

Steps: synthetic data (cached under ``benchmarks/data``), one process per contender to build
its layout (timed as ingest) and measure its DataLoader with 0 and 2 workers, interleaved micro
benchmarks (patch / item / slice / full-volume reads), the lever experiments (full mode), then
``benchmarks/results/<mode>.json``, ``<mode>_throughput.png``, the README table, and every
target ratio with PASS/FAIL on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from typing import Any

from benchmarks import report
from benchmarks.config import MODES, BenchConfig
from benchmarks.synth import DataSet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))


_T0 = time.perf_counter()


def log(msg: str) -> None:
    el = time.perf_counter() - _T0
    print(f"[{int(el // 60):02d}:{int(el % 60):02d}] {msg}", flush=True)


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    import psutil

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "monai", "tiledb", "torchio", "blosc2", "radiobject", "nibabel", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        import tiledb

        versions["libtiledb"] = ".".join(map(str, tiledb.libtiledb.version()))
    except Exception:
        pass
    cpus = os.cpu_count() or 0
    ram = psutil.virtual_memory().total / 2**30
    return {
        "cpu_model": model,
        "cpus": cpus,
        "ram_gib": round(ram, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "summary": f"{cpus} CPU cores ({model}), {ram:.0f} GiB RAM, {platform.system()}",
        "loadavg_start": os.getloadavg()[0],
    }


def _summarise(first_s: float, windows: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    import numpy as np

    per_repeat = [len(w["times"]) * batch / sum(w["times"]) for w in windows]
    times = [t for w in windows for t in w["times"]]
    n = sum(len(w["times"]) for w in windows) * batch
    return {
        "samples_per_s": float(np.median(per_repeat)),
        "samples_per_s_repeats": per_repeat,
        "batch_p50_ms": 1e3 * float(np.percentile(times, 50)),
        "batch_p95_ms": 1e3 * float(np.percentile(times, 95)),
        "first_batch_s": first_s,
        "batches_timed": len(times),
        "cpu_ms_per_sample": 1e3 * sum(w["cpu_s"] for w in windows) / n,
        "loadavg": float(np.mean([w["loadavg"] for w in windows])),
    }


def run_loaders(cfg: BenchConfig, pool: Any, contenders: list[Any], log=log) -> dict[str, Any]:
    """Build every layout (one contender at a time), then measure the loaders interleaved."""
    import random

    results: dict[str, Any] = {}
    for c in contenders:
        e = results[c.name] = {"label": c.label, "group": c.group, "prepare": {}, "bytes": {}, "runs": {}}
        for spec in cfg.datasets:
            rep = pool.call(c.name, {"op": "prepare", "set": spec.name}, timeout=cfg.contender_timeout_s * 4)
            if "error" in rep:
                e["error"] = f"prepare {spec.name}: {rep['error']}"
                log(f"    {c.name}: {e['error']}")
                break
            e["prepare"][spec.name] = rep["info"]
            e["bytes"][spec.name] = rep["bytes"]
    rng = random.Random(7)
    runnable = [c for c in contenders if c.has_loader and "error" not in results[c.name]]
    for set_name in cfg.loader_sets:
        for w in cfg.workers:
            phase = _LoaderPhase(cfg, pool, runnable, set_name, w, rng)
            for name, res in phase.run().items():
                results[name]["runs"][phase.key] = res
    return results


class _LoaderPhase:
    """All loaders of one (set, workers) pair, timed in interleaved rounds.

    Loaders with worker processes are started for each window and stopped after it, so that no
    worker prefetches in the background while another contender is timed; loaders without
    workers stay open across rounds.
    """

    def __init__(self, cfg: BenchConfig, pool: Any, contenders: list[Any], set_name: str, workers: int, rng) -> None:
        from benchmarks.synth import DataSet

        self.cfg, self.pool, self.set_name, self.workers, self.rng = cfg, pool, set_name, workers, rng
        self.by_name = {c.name: c for c in contenders}
        self.ds = DataSet(pool.data_root, cfg.dataset(set_name))
        self.key = f"{set_name}/w{workers}"
        self.length = (cfg.warmup_batches + cfg.repeats * cfg.batches_per_repeat + 4) * cfg.batch_size
        self.timeout = max(300.0, cfg.contender_timeout_s)
        self.first: dict[str, float] = {}
        self.mem: dict[str, dict[str, float]] = {}
        self.windows: dict[str, list] = {n: [] for n in self.by_name}
        self.errors: dict[str, list[str]] = {}
        self.live: set[str] = set()

    def _fail(self, name: str, err: str) -> None:
        self.errors.setdefault(name, []).append(err)
        log(f"    {name} {self.key}: FAILED {err}")

    def start(self, name: str) -> bool:
        req = {"op": "loader_start", "set": self.set_name, "workers": self.workers, "length": self.length}
        rep = self.pool.call(name, req, timeout=self.timeout)
        if "error" in rep:
            self._fail(name, rep["error"])
            self.pool.call(name, {"op": "loader_stop", "set": self.set_name}, timeout=60)
            return False
        self.first.setdefault(name, rep["first_batch_s"])
        self.live.add(name)
        return True

    def stop(self, name: str) -> None:
        rep = self.pool.call(name, {"op": "loader_stop", "set": self.set_name}, timeout=120)
        self.live.discard(name)
        for k, v in rep.items():
            if k != "error":
                self.mem.setdefault(name, {})[k] = max(v, self.mem.get(name, {}).get(k, 0.0))

    def window(self, name: str, last_round: bool) -> None:
        c = self.by_name[name]
        ephemeral = c.background_work(self.workers)
        if name not in self.live and not self.start(name):
            return
        lo = c.min_batches(self.cfg, self.ds)
        req = {
            "op": "loader_window",
            "set": self.set_name,
            "max": max(self.cfg.batches_per_repeat, lo),
            "min": lo,
            "budget": self.cfg.repeat_budget_s,
        }
        rep = self.pool.call(name, req, timeout=self.timeout)
        if "error" in rep:
            self._fail(name, rep["error"])
            self.stop(name)
            return
        self.windows[name].append(rep)
        if ephemeral or last_round:
            self.stop(name)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        log(f"- loaders {self.key}: {len(self.by_name)} contenders, interleaved rounds")
        rounds = cfg.repeats if self.workers == 0 else min(cfg.repeats, cfg.repeats_with_workers)
        for r in range(rounds):
            order = list(self.by_name)
            self.rng.shuffle(order)
            for name in order:
                c = self.by_name[name]
                if c.slow_loader and r >= cfg.slow_loader_repeats:
                    continue
                if not self.pool.alive(name) or len(self.errors.get(name, [])) >= 2:
                    continue  # a dead server, or a loader that failed twice: no more tries
                self.window(name, last_round=r == rounds - 1)
            log(f"  round {r + 1}/{rounds} done")
        for name in list(self.live):
            self.stop(name)
        out: dict[str, Any] = {}
        for name in self.by_name:
            ws, errs = self.windows.get(name), self.errors.get(name, [])
            if ws:
                res = _summarise(self.first[name], ws, cfg.batch_size)
                res.update(self.mem.get(name, {}))
                if errs:
                    res["failures"] = errs
                out[name] = res
                log(
                    f"    {name:18s} {self.key}: {res['samples_per_s']:8.1f} samples/s  "
                    f"(CPU {res['cpu_ms_per_sample']:.1f} ms/sample, first batch {res['first_batch_s']:.2f} s)"
                    + (f"  [{len(errs)} failed start/window(s)]" if errs else "")
                )
            elif errs:
                out[name] = {"error": errs[0], "failures": errs}
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mode", choices=sorted(MODES), default="quick")
    p.add_argument("--quick", action="store_true", help="same as --mode quick")
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--readme", default=os.path.join(HERE, "README.md"), help="'' to leave the README alone")
    p.add_argument("--contenders", default="", help="comma-separated subset (default: all)")
    p.add_argument("--levers", dest="levers", action="store_true", default=None)
    p.add_argument("--no-levers", dest="levers", action="store_false")
    p.add_argument("--no-micro", action="store_true")
    p.add_argument("--shared-process", action="store_true", help="all contenders in one process (smoke test)")
    p.add_argument("--report-only", action="store_true", help="redo PNG, README table and ratios from the JSON")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else a.mode
    if a.report_only:
        return _report(mode, a.results_dir, a.readme)
    cfg = MODES[mode]
    isolate = not (a.shared_process or mode == "tiny")
    do_levers = cfg.levers if a.levers is None else a.levers
    os.makedirs(a.results_dir, exist_ok=True)
    data = os.path.abspath(a.data_dir)
    work = os.path.join(data, f"_run_{mode}")
    os.makedirs(work, exist_ok=True)
    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M")
    mach = machine_info()
    log(f"benchmarks ({mode}) on {mach['summary']}, load average {mach['loadavg_start']:.1f}")

    from benchmarks import loaders as registry

    all_names = [n for n in report.ORDER if n in registry.load_all()]
    names = [n for n in a.contenders.split(",") if n] or all_names

    log("- data")
    datasets: dict[str, Any] = {}
    for spec in cfg.datasets:
        ds = DataSet(data, spec)
        ds.build_sources(log=log)
        datasets[spec.name] = {
            "n_subjects": spec.n_subjects,
            "shape": list(spec.shape),
            "nii_gz_bytes": ds.nii_gz_bytes(),
            "raw_bytes": int(ds.layout("nii_gz")["voxels"]) * 3,  # int16 image + uint8 label
            "generate_s": ds.manifest.get("generate_s"),
            "root": ds.root,
        }

    from benchmarks.micro import run_micro
    from benchmarks.servers import Pool

    contenders = [registry.get(n) for n in names]
    for c in contenders:
        if c.name in cfg.skip_loaders:
            c.has_loader = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are closed below
    log(f"- starting {len(names)} contender processes")
    pool = Pool(names, mode, data, os.path.join(work, "servers.log"), isolate=isolate)
    try:
        log("- layouts (ingest, timed one at a time)")
        loader_results = run_loaders(cfg, pool, contenders)
        micro: dict[str, Any] = {}
        if not a.no_micro:
            log("- micro benchmarks (interleaved)")
            micro = run_micro(cfg, pool, [c for c in contenders if c.micro], log=log)
    finally:
        pool.close()

    levers: dict[str, Any] = {}
    if do_levers:
        log("- levers")
        from benchmarks import levers as lever_mod

        levers = lever_mod.run_all(cfg, data, work, log=log)

    mach["loadavg_end"] = os.getloadavg()[0]
    results = {
        "started": started,
        "elapsed_s": time.perf_counter() - t_start,
        "config": cfg.to_json(),
        "machine": mach,
        "datasets": datasets,
        "loaders": loader_results,
        "micro": micro,
        "levers": levers,
    }
    json_path = os.path.join(a.results_dir, f"{mode}.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    return _report(mode, a.results_dir, a.readme)


def _report(mode: str, results_dir: str, readme: str) -> int:
    """Ratios, PNG, README section and the printed table, from ``<results_dir>/<mode>.json``."""
    json_path = os.path.join(results_dir, f"{mode}.json")
    with open(json_path) as f:
        results = json.load(f)
    ratios = report.compute_ratios(results)
    results["ratios"] = ratios
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    png_name = f"{mode}_throughput.png"
    report.plot(results, os.path.join(results_dir, png_name))
    if readme:
        report.update_readme(readme, mode, report.section(results, ratios, png_name))
        if results.get("levers"):
            report.update_readme_levers(readme, report.lever_table(results["levers"]))
    log("")
    log(report.results_table(results, "large"))
    log("")
    for line in report.ratio_lines(ratios):
        log(line)
    log(f"\nwrote {json_path}, {os.path.join(results_dir, png_name)}" + (f", {readme}" if readme else ""))
    log(f"total {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
