"""One lever at a time: what each inference setting does to the network part of ``/infer``.

The network is built from a bundle's ``inference.json`` (``network_def``, ``inferer``), with its
initial weights (the time does not depend on their values), and run by the bundle's sliding
window (MONAI's ``SlidingWindowInferer`` up to 0.1.x; from 0.2.0 the bundle's
``scripts.inferers.FittedWindowInferer`` over ``sw_roi_size``) on a random 1-channel volume, in this
process, without the server. Each lever changes one thing, or a named combination, against a
base: the ``before`` bundle (the 0.1.x network: instance norm, 96^3 windows) for the levers
measured up to 0.1.5, the ``after`` bundle (0.2.0, today's default) for the ``0.2.0`` ones; a
coarser working spacing is timed as the network's work on the grid ``Spacingd`` makes of the latency store's CTs (resampling itself is timed through the
server). Levers are visited in a shuffled order per round so that load from other users of the
machine spreads over all. Wall and CPU seconds (this process, all threads) are the medians over
rounds.

Run on its own (``--argmax``: only the postprocessing lever, ``AsDiscreted`` against
``radiobundles.ct3d.ArgmaxLabeld``)::

    python -m benchmarks.annotator_levers --argmax --threads 1
    python -m benchmarks.annotator_levers --before /tmp/before/bundles/ct_segmentation_3d \\
        --after bundles/ct_segmentation_3d --rounds 2

The 0.2.0 levers beside the 0.1.x default (the bundle before 0.2.0, from git), both torch
threads of an idle machine::

    mkdir -p /tmp/before && git archive f71711e bundles/ct_segmentation_3d | tar -x -C /tmp/before
    python -m benchmarks.annotator_levers --before /tmp/before/bundles/ct_segmentation_3d \\
        --after bundles/ct_segmentation_3d --threads 2 --only 0.2.0 "overlap 0.125" "overlap 0 (" \\
        "TorchScript (trace, freeze)"
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from radiobundles.resources import bundle_scripts

__all__ = ["LEVERS", "run_argmax", "run_levers"]

SHAPES = {"96x96x64": (96, 96, 64), "256x256x160": (256, 256, 160)}
# bf16 has no native support on CPUs without AVX512-BF16/AMX (it was ~20x slower here): small volume only
SKIP = {("base + bf16 autocast", "256x256x160")}
LIGHT_NET = {"channels": [8, 16, 32, 64, 128], "num_res_units": 1}
# the latency store's CTs (benchmarks.annotator_latency) have spacings (1.847, 1.186, 0.774) mm
# and (1.621, 2.411, 0.959) mm: a working spacing of 1.5 / 2.0 mm (Spacingd) gives these grids
SPACING_SHAPES = {
    1.5: {"96x96x64": (118, 76, 33), "256x256x160": (277, 411, 102)},
    2.0: {"96x96x64": (89, 57, 25), "256x256x160": (207, 308, 77)},
}


def _build(bundle: str, net: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    parser = ConfigParser()
    parser.read_config(os.path.join(bundle, "configs", "inference.json"))
    parser["bundle_root"] = bundle
    for key, value in (net or {}).items():
        parser[f"network_def#{key}"] = value
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    sw = {k: parser.get_parsed_content(k) for k in ("patch_size", "sw_batch_size", "sw_overlap")}
    # from 0.2.0: the inference window is sw_roi_size, fitted to the volume (scripts.inferers)
    sw["sw_roi_size"] = parser.get_parsed_content("sw_roi_size") if "sw_roi_size" in parser else None
    return network, sw


def _inferer(bundle: str, sw: dict[str, Any]) -> tuple[list[int], Callable]:
    """The window and sliding-window inferer the bundle's ``inference.json`` uses."""
    if sw.get("sw_roi_size") is None:
        roi = sw["patch_size"]
        return roi, SlidingWindowInferer(roi, sw["sw_batch_size"], sw["sw_overlap"], mode="gaussian")
    with bundle_scripts(bundle):
        from scripts.inferers import FittedWindowInferer
    inferer = FittedWindowInferer(
        sw["sw_roi_size"], sw_batch_size=sw["sw_batch_size"], overlap=sw["sw_overlap"], mode="gaussian"
    )
    return list(sw["sw_roi_size"]), inferer


# name -> (base bundle, network overrides, inferer overrides, setups); setups: comma-separated wraps of
# the network / call ("threads2", "channels_last", "torchscript", "bf16", "spacing1.5", "spacing2.0")
LEVERS: dict[str, tuple[str, dict[str, Any], dict[str, Any], str]] = {
    "base: 0.1.x default (UNet 16-256 instance norm, window 96, overlap 0.25, sw_batch 4)": ("before", {}, {}, ""),
    "base + overlap 0.5 (0.1.1)": ("before", {}, {"sw_overlap": 0.5}, ""),
    "base + overlap 0 (18 windows instead of 32 at 256x256x160)": ("before", {}, {"sw_overlap": 0.0}, ""),
    "base + sw_batch 1": ("before", {}, {"sw_batch_size": 1}, ""),
    "base + sw_batch 8": ("before", {}, {"sw_batch_size": 8}, ""),
    "base + window 128x128x160, overlap 0": ("before", {}, {"patch_size": [128, 128, 160], "sw_overlap": 0.0}, ""),
    "base + window 160": ("before", {}, {"patch_size": [160] * 3}, ""),
    "base + 2 torch threads": ("before", {}, {}, "threads2"),
    "base + channels-last": ("before", {}, {}, "channels_last"),
    "base + TorchScript (trace, freeze)": ("before", {}, {}, "torchscript"),
    "base + bf16 autocast": ("before", {}, {}, "bf16"),
    "base + lighter net 8-128, 1 res unit": ("before", LIGHT_NET, {}, ""),
    "base + working spacing 1.5 mm (Spacingd grid)": ("before", {}, {}, "spacing1.5"),
    "base + working spacing 2.0 mm (Spacingd grid)": ("before", {}, {}, "spacing2.0"),
    "base + TorchScript + 2 threads": ("before", {}, {}, "torchscript,threads2"),
    "base + window 128x128x160, overlap 0 + TorchScript + 2 threads": (
        "before",
        {},
        {"patch_size": [128, 128, 160], "sw_overlap": 0.0},
        "torchscript,threads2",
    ),
    "base + overlap 0.125 (18 windows at 256x256x160, blending kept)": ("before", {}, {"sw_overlap": 0.125}, ""),
    # 0.2.0 (issue 14): batch norm, so the window need not be the training patch: a few large
    # windows fitted to the volume (scripts.inferers)
    "0.2.0 default: batch norm, window fitted up to 128x128x160, overlap 0, sw_batch 1": ("after", {}, {}, ""),
    "0.2.0 + sw_batch 4": ("after", {}, {"sw_batch_size": 4}, ""),
    "0.2.0 + overlap 0.25": ("after", {}, {"sw_overlap": 0.25}, ""),
    "0.2.0 + window 128^3 (8 windows at 256x256x160)": ("after", {}, {"sw_roi_size": [128] * 3}, ""),
    "0.2.0 + whole volume as one window": ("after", {}, {"sw_roi_size": [256, 256, 160]}, ""),
    "0.2.0 + TorchScript (trace, freeze: folds batch norm)": ("after", {}, {}, "torchscript"),
    "0.2.0 + lighter net 8-128, 2 res units": ("after", {"channels": [8, 16, 32, 64, 128]}, {}, ""),
    "0.2.0 + 1 res unit": ("after", {"num_res_units": 1}, {}, ""),
}


def _prepare(network: torch.nn.Module, setup: str, example: torch.Tensor) -> tuple[Callable, Callable]:
    """The network to call and a context manager factory for the call."""
    setups = setup.split(",")
    if "channels_last" in setups:
        network = network.to(memory_format=torch.channels_last_3d)
        return (lambda x: network(x.contiguous(memory_format=torch.channels_last_3d))), contextlib.nullcontext
    if "torchscript" in setups:
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(network, example))
        return traced, contextlib.nullcontext
    if "bf16" in setups:
        return network, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return network, contextlib.nullcontext


def _time_one(bundles: dict[str, str], lever: str, shape: tuple[int, ...]) -> tuple[float, float]:
    base, net, sw_over, setup = LEVERS[lever]
    network, sw = _build(bundles[base], net)
    sw.update(sw_over)
    roi, inferer = _inferer(bundles[base], sw)
    for pixdim, grids in SPACING_SHAPES.items():
        if f"spacing{pixdim}" in setup.split(","):
            shape = grids[next(k for k, v in SHAPES.items() if v == tuple(shape))]
    x = torch.rand(1, 1, *shape)
    fn, ctx = _prepare(network, setup, torch.rand(sw["sw_batch_size"], 1, *roi))
    threads = torch.get_num_threads()
    if "threads2" in setup.split(","):
        torch.set_num_threads(2)
    try:
        with torch.no_grad(), ctx():
            w0, c0 = time.perf_counter(), time.process_time()
            inferer(x, fn)
            return time.perf_counter() - w0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)


def run_levers(
    before: str | None,
    after: str,
    rounds: int = 1,
    shapes: dict[str, tuple[int, ...]] | None = None,
    threads: int = 1,
    only: list[str] | None = None,
) -> str:
    """Time every lever of :data:`LEVERS` on every shape; returns the printed table.

    ``only``: time just the levers whose name contains one of these strings (the base always).
    ``threads``: torch threads of every lever but the "2 torch threads" ones. One by default: on
    a machine busier than its cores, more OpenMP threads than free cores spin-wait, and CPU
    seconds then measure the spinning rather than the work (7x the CPU at load 28 here).
    """
    torch.set_num_threads(threads)
    bundles = {"before": before or after, "after": after}
    shapes = shapes or SHAPES
    levers = [k for k in LEVERS if not only or k.startswith("base:") or any(o in k for o in only)]
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rnd in range(rounds):
        jobs = [(lever, s) for lever in levers for s in shapes if (lever, s) not in SKIP]
        random.Random(rnd).shuffle(jobs)
        for lever, s in jobs:
            times.setdefault((lever, s), []).append(_time_one(bundles, lever, shapes[s]))
            w, c = times[(lever, s)][-1]
            print(f"  [{rnd + 1}/{rounds}] {lever} @ {s}: {w:.2f} s wall, {c:.2f} s CPU", flush=True)
    load = os.getloadavg()
    head = f"{'lever (network part of /infer, in-process)':72s}" + "".join(
        f"{s + ' wall / CPU s':>26s}" for s in shapes
    )
    lines = [f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, torch threads {torch.get_num_threads()}"]
    lines += [head, "-" * len(head)]
    for lever in levers:
        cells = ""
        for s in shapes:
            if (lever, s) in SKIP:
                cells += f"{'not run':>26s}"
                continue
            w = statistics.median(t[0] for t in times[(lever, s)])
            c = statistics.median(t[1] for t in times[(lever, s)])
            cells += f"{w:>17.2f} / {c:6.2f}"
        lines.append(f"{lever:72s}{cells}")
    return "\n".join(lines)


def run_argmax(shapes: dict[str, tuple[int, ...]] | None = None, n_classes: int = 3, rounds: int = 2) -> str:
    """The postprocessing lever: ``AsDiscreted(argmax=True)`` against ``ArgmaxLabeld`` (the same
    labels) on softmax outputs of ``n_classes`` channels; returns the printed table (medians)."""
    from monai.data import MetaTensor
    from monai.transforms import AsDiscreted

    from radiobundles.ct3d import ArgmaxLabeld

    shapes = shapes or SHAPES
    transforms = {"AsDiscreted(argmax=True)": AsDiscreted("pred", argmax=True), "ArgmaxLabeld": ArgmaxLabeld("pred")}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for s, shape in shapes.items():
        pred = MetaTensor(torch.rand(n_classes, *shape).softmax(0))
        for _ in range(rounds):
            for name, t in transforms.items():
                w0, c0 = time.perf_counter(), time.process_time()
                t({"pred": pred})
                times.setdefault((name, s), []).append((time.perf_counter() - w0, time.process_time() - c0))
    load = os.getloadavg()
    head = f"{f'argmax of {n_classes} channels':62s}" + "".join(f"{s + ' wall / CPU s':>26s}" for s in shapes)
    lines = [f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, torch threads {torch.get_num_threads()}"]
    lines += [head, "-" * len(head)]
    for name in transforms:
        cells = ""
        for s in shapes:
            w = statistics.median(t[0] for t in times[(name, s)])
            c = statistics.median(t[1] for t in times[(name, s)])
            cells += f"{w:>17.2f} / {c:6.2f}"
        lines.append(f"{name:62s}{cells}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="the 'before' bundle folder")
    parser.add_argument("--after", help="the 'after' bundle folder")
    parser.add_argument("--argmax", action="store_true", help="only the postprocessing lever (argmax)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see run_levers)")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--only", nargs="*", default=None, help="levers whose name contains one of these")
    args = parser.parse_args()
    if args.argmax:
        torch.set_num_threads(args.threads)
        print(run_argmax({s: SHAPES[s] for s in args.shapes}))
        return 0
    if not (args.after and args.before):
        parser.error("--before (the 0.1.x bundle, see above) and --after are required (or --argmax)")
    shapes = {s: SHAPES[s] for s in args.shapes}
    print(run_levers(args.before, args.after, args.rounds, shapes, args.threads, args.only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
