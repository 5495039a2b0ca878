"""Ingest throughput: one process, ``--workers 2`` and Ray with 2 CPUs, on the same files.

Each mode ingests the same synthetic CT + label pairs into a fresh local store; wall time
includes starting the workers (forkserver / Ray), a fixed cost per run; the table prints the CPU seconds of this
process and its descendants (Ray's daemons count once they have exited and been reaped) and
the load average before and after each mode.

Run:
    python -m benchmarks.parallel_ingest --subjects 16 --shape 96 --out /tmp/parallel_ingest
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time

from radiobject_adapter import ingest_niftis

__all__ = ["main"]


def _cpu_s() -> float:
    """CPU seconds of this process, its reaped children and its live descendants (the pool's
    forkserver outlives the pool; its workers' time is in its children times once reaped)."""
    import psutil

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    for proc in psutil.Process().children(recursive=True):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + (t.children_user + t.children_system if proc.parent().pid == os.getpid() else 0)
    return total


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--shape", type=int, default=96, help="edge of the (roughly cubic) volumes")
    parser.add_argument("--out", default="/tmp/parallel_ingest")
    parser.add_argument("--modes", default="1,2,ray2", help="comma list of 1, 2, ..., rayN")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    s = args.shape
    # imported here, not at the top: each pool worker imports this __main__ module again (Python's
    # forkserver/spawn rule), and the synthetic-data module brings MONAI and torch (~12 CPU s a worker)
    from radiobject_adapter.synthetic import make_ct_dataset

    ds = make_ct_dataset(
        os.path.join(args.out, "nifti"),
        n_subjects=args.subjects,
        shape_range=((s, s + 8), (s, s + 8), (s // 2, s // 2 + 4)),
        seed=1,
    )
    rows = []
    for mode in args.modes.split(","):
        ray = mode.startswith("ray")
        workers = int(mode[3:] if ray else mode)
        store = os.path.join(args.out, f"store_{mode}")
        load0, cpu0, t0 = os.getloadavg()[0], _cpu_s(), time.perf_counter()
        report = ingest_niftis(
            store,
            {"CT": ds.images_dir, "seg": ds.labels_dir},
            progress=False,
            workers=workers,
            ray_address="local" if ray else None,
        )
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        assert report.ok and report.n_written == 2 * args.subjects, report.summary()
        rows.append(
            {
                "mode": f"Ray, {workers} CPUs" if ray else f"--workers {workers}",
                "volumes": report.n_written,
                "wall_s": round(wall, 1),
                "volumes_per_s": round(report.n_written / wall, 2),
                "cpu_s": round(cpu, 1),
                "load_before": round(load0, 2),
                "load_after": round(os.getloadavg()[0], 2),
            }
        )
    print(f"{'mode':<16}{'volumes':>8}{'wall s':>9}{'vol/s':>8}{'CPU s':>8}{'load 1m before/after':>24}")
    for r in rows:
        print(
            f"{r['mode']:<16}{r['volumes']:>8}{r['wall_s']:>9}{r['volumes_per_s']:>8}{r['cpu_s']:>8}"
            f"{r['load_before']:>14} / {r['load_after']}"
        )
    with open(os.path.join(args.out, "parallel_ingest.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
