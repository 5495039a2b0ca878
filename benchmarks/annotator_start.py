"""Where the label server's start goes: MONAI Label's imports, this app's imports, the app's init.

In one process, in the order ``monailabel start_server`` does it: ``import monailabel.main`` and
``monailabel.app`` (MONAI Label, MONAI, FastAPI, torch), then ``import monailabel_app.main``, then
``RadiobundlesApp(...)`` and the first ``info()`` (what ``/info/`` answers) on a store, the last
under cProfile. Prints CPU and wall seconds of each part and the top of the profile.

Run (a demo store, e.g. from ``benchmarks.annotator_dice``'s ``data/store``)::

    python -m benchmarks.annotator_start --store /tmp/dice/data/store --out /tmp/start
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import time

__all__ = ["measure_start"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _since(t: tuple[float, float]) -> tuple[float, float, tuple[float, float]]:
    now = (time.process_time(), time.perf_counter())
    return now[0] - t[0], now[1] - t[1], now


def measure_start(store: str, out: str, top: int = 30) -> str:
    """Time the three parts of a server start in this process; returns the printed report."""
    t = (time.process_time(), time.perf_counter())
    # what the monailabel command imports, then what uvicorn imports
    import monailabel.app
    import monailabel.main  # noqa: F401

    cpu_ml, wall_ml, t = _since(t)
    import monailabel_app.main as app_main

    cpu_app, wall_app, t = _since(t)
    workspace, app_dir = os.path.join(out, "workspace"), os.path.join(out, "app")
    shutil.rmtree(workspace, ignore_errors=True)
    os.makedirs(app_dir, exist_ok=True)
    shutil.copy(os.path.join(REPO, "monailabel_app", "main.py"), app_dir)
    conf = {"models": "ct_segmentation_3d", "bundles_dir": os.path.join(REPO, "bundles"), "workspace": workspace}
    profile = cProfile.Profile()
    profile.enable()
    app = app_main.RadiobundlesApp(app_dir, store, conf)
    app.info()
    profile.disable()
    cpu_init, wall_init, _ = _since(t)
    stats = io.StringIO()
    pstats.Stats(profile, stream=stats).sort_stats("cumulative").print_stats(top)
    load = os.getloadavg()
    return "\n".join(
        [
            f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; CPU s / wall s",
            f"import monailabel.main + monailabel.app   {cpu_ml:7.2f} / {wall_ml:7.1f}",
            f"import monailabel_app.main (this app)     {cpu_app:7.2f} / {wall_app:7.1f}  ({len(sys.modules)} modules)",
            f"RadiobundlesApp(...) + first info()       {cpu_init:7.2f} / {wall_init:7.1f}",
            stats.getvalue(),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--top", type=int, default=30, help="profile lines to print")
    args = parser.parse_args()
    print(measure_start(args.store, args.out, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
