"""Ratios against the targets, the results table, the bar chart and the README section."""

from __future__ import annotations

import math
import os
import re
from typing import Any

# (key, description, comparison, threshold)
TARGETS: list[tuple[str, str, str, float]] = [
    ("patch_vs_radiobject", "random 64³ patch p50: radiobject 0.1.1 (fastest tiling) ÷ ours", ">=", 4.0),
    ("patch_vs_blosc2", "random 64³ patch p50: ours ÷ nnU-Net blosc2", "<=", 2.0),
    ("loader_vs_monai_niigz", "loader samples/s (best workers): ours ÷ MONAI .nii.gz", ">=", 20.0),
    ("loader_vs_radiobject", "loader samples/s (best workers): ours ÷ radiobject 0.1.1", ">=", 3.0),
    ("loader_vs_persistent", "loader samples/s (best workers): ours ÷ MONAI PersistentDataset", ">=", 1.0),
    ("fg_vs_random", "foreground-sampled item p50 ÷ uniform item p50 (ours)", "<=", 1.2),
    ("size_vs_niigz", "store bytes on disk ÷ .nii.gz bytes", "<=", 1.2),
]
OURS = ("ours-iso", "ours-v0")  # defaults, the settings before tuning
RADIOBJECT = ("radiobject-iso", "radiobject-axial")
ORDER = (
    "ours-iso",
    "ours-axial",
    "ours-v0",
    "radiobject-iso",
    "radiobject-axial",
    "monai-niigz",
    "monai-nii",
    "monai-persistent",
    "torchio-queue",
    "npy-mmap",
    "blosc2-nnunet",
)


def _best_run(entry: dict[str, Any], set_name: str) -> tuple[str | None, dict[str, Any] | None]:
    best_key, best = None, None
    for key, run in entry.get("runs", {}).items():
        if not key.startswith(set_name + "/") or "samples_per_s" not in run:
            continue
        if best is None or run["samples_per_s"] > best["samples_per_s"]:
            best_key, best = key, run
    return best_key, best


def best_sps(results: dict[str, Any], name: str, set_name: str = "large") -> float | None:
    _, run = _best_run(results["loaders"].get(name, {}), set_name)
    return None if run is None else run["samples_per_s"]


def _micro(results: dict[str, Any], name: str, metric: str, field: str = "p50_ms") -> float | None:
    return results.get("micro", {}).get(name, {}).get(metric, {}).get(field)


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def compute_ratios(results: dict[str, Any], set_name: str = "large") -> dict[str, dict[str, Any]]:
    """``{ours_name: {target_key: {"value", "pass", "detail"}}}``."""
    out: dict[str, dict[str, Any]] = {}
    radi_patch = [(n, _micro(results, n, "patch")) for n in RADIOBJECT]
    radi_patch = [(n, v) for n, v in radi_patch if v is not None]
    radi_fast = min(radi_patch, key=lambda nv: nv[1]) if radi_patch else (None, None)
    radi_sps = [(n, best_sps(results, n, set_name)) for n in RADIOBJECT]
    radi_sps = [(n, v) for n, v in radi_sps if v is not None]
    radi_best = max(radi_sps, key=lambda nv: nv[1]) if radi_sps else (None, None)
    niigz_bytes = results.get("datasets", {}).get(set_name, {}).get("nii_gz_bytes")
    for ours in OURS:
        if ours not in results["loaders"] and ours not in results.get("micro", {}):
            continue
        patch = _micro(results, ours, "patch")
        sps = best_sps(results, ours, set_name)
        store = (results["loaders"].get(ours, {}).get("bytes") or {}).get(set_name)
        values = {
            "patch_vs_radiobject": (
                _div(radi_fast[1], patch),
                f"{radi_fast[0]} {radi_fast[1] or float('nan'):.2f} ms vs {patch or float('nan'):.2f} ms",
            ),
            "patch_vs_blosc2": (
                _div(patch, _micro(results, "blosc2-nnunet", "patch")),
                f"{patch or float('nan'):.2f} ms vs {_micro(results, 'blosc2-nnunet', 'patch') or float('nan'):.2f} ms",
            ),
            "loader_vs_monai_niigz": (_div(sps, best_sps(results, "monai-niigz", set_name)), ""),
            "loader_vs_radiobject": (_div(sps, radi_best[1]), f"vs {radi_best[0]}"),
            "loader_vs_persistent": (_div(sps, best_sps(results, "monai-persistent", set_name)), ""),
            "fg_vs_random": (_div(_micro(results, ours, "item_foreground"), _micro(results, ours, "item_random")), ""),
            "size_vs_niigz": (_div(store, niigz_bytes), ""),
        }
        out[ours] = {}
        for key, desc, op, thr in TARGETS:
            v, detail = values[key]
            ok = None if v is None else (v >= thr if op == ">=" else v <= thr)
            out[ours][key] = {"value": v, "pass": ok, "target": f"{op} {thr:g}", "description": desc, "detail": detail}
    return out


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio_lines(ratios: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for ours, vals in ratios.items():
        tag = "defaults" if ours == "ours-iso" else "settings before tuning, for comparison"
        lines.append(f"{ours} ({tag}):")
        for key, desc, _, _ in TARGETS:
            r = vals[key]
            verdict = "n/a " if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
            detail = f"  [{r['detail']}]" if r["detail"] else ""
            lines.append(f"  {verdict}  {desc}: {_fmt(r['value'], 2)} (target {r['target']}){detail}")
    return lines


def ratio_table(ratios: dict[str, dict[str, Any]]) -> str:
    names = list(ratios)
    head = "| target | " + " | ".join(f"{n}" for n in names) + " |"
    sep = "|---|" + "---|" * len(names)
    rows = [head, sep]
    for key, desc, op, thr in TARGETS:
        cells = []
        for n in names:
            r = ratios[n][key]
            verdict = "n/a" if r["pass"] is None else ("**PASS**" if r["pass"] else "FAIL")
            cells.append(f"{_fmt(r['value'], 2)} {verdict}")
        rows.append(f"| {desc} ({op} {thr:g}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def results_table(results: dict[str, Any], set_name: str = "large") -> str:
    loaders, micro = results["loaders"], results.get("micro", {})
    ds = results.get("datasets", {}).get(set_name, {})
    niigz_gb = (ds.get("nii_gz_bytes") or 0) / 1e9
    workers = results["config"]["workers"]
    head = (
        "| contender | on disk GB (×.nii.gz) | ingest s per GB .nii.gz | "
        + " | ".join(f"samples/s w{w}" for w in workers)
        + " | small set samples/s (best) | batch p50 / p95 ms | first batch s | peak PSS MB | CPU ms/sample"
        " | patch p50 ms (CPU) | item p50 ms uniform / fg | full volume s | axial slice ms |"
    )
    n_cols = head.count("|") - 1
    rows = [head, "|" + "---|" * n_cols]
    names = [n for n in ORDER if n in loaders or n in micro] + [
        n for n in list(loaders) + list(micro) if n not in ORDER and not n.startswith("_")
    ]
    seen = set()
    for n in names:
        if n in seen:
            continue
        seen.add(n)
        e = loaders.get(n, {})
        b = (e.get("bytes") or {}).get(set_name)
        size = "–" if b is None else f"{b / 1e9:.3f} ({b / 1e9 / niigz_gb:.2f}×)" if niigz_gb else f"{b / 1e9:.3f}"
        prep = (e.get("prepare") or {}).get(set_name) or {}
        ingest = _fmt(prep.get("build_s") / niigz_gb) if prep.get("build_s") and niigz_gb else "–"
        if n in ("monai-niigz", "torchio-queue"):
            ingest = "0 (reads .nii.gz)"
        cells = []
        for w in workers:
            run = e.get("runs", {}).get(f"{set_name}/w{w}")
            if run is None:
                cells.append("–")
            elif "samples_per_s" not in run:
                cells.append("FAILED (hang)" if "timed out" in run.get("error", "") else "FAILED")
            else:
                nf = len(run.get("failures", []))
                cells.append(_fmt(run["samples_per_s"]) + (f" ({nf} window(s) hung)" if nf else ""))
        small = best_sps(results, n, "small") if e else None
        _, best = _best_run(e, set_name)
        lat = f"{_fmt(best['batch_p50_ms'])} / {_fmt(best['batch_p95_ms'])}" if best else "–"
        first = _fmt(best["first_batch_s"], 2) if best else "–"
        mem = _fmt(best.get("peak_pss_mb")) if best else "–"
        cpu = _fmt(best.get("cpu_ms_per_sample")) if best else "–"
        m = micro.get(n, {})
        patch = m.get("patch", {})
        patch_s = f"{_fmt(patch.get('p50_ms'), 2)} ({_fmt(patch.get('cpu_mean_ms'), 2)})" if patch else "–"
        items = (
            f"{_fmt(m['item_random'].get('p50_ms'), 2)} / {_fmt(m['item_foreground'].get('p50_ms'), 2)}"
            if m.get("item_random")
            else "–"
        )
        full = _fmt(m.get("full", {}).get("p50_ms", float("nan")) / 1e3, 2) if m.get("full") else "–"
        axial = _fmt(m.get("axial", {}).get("p50_ms"), 2) if m.get("axial") else "–"
        label = e.get("label") or n
        rows.append(
            f"| **{n}** {label} | {size} | {ingest} | "
            + " | ".join(cells)
            + f" | {_fmt(small)} | {lat} | {first} | {mem} | {cpu} | {patch_s} | {items} | {full} | {axial} |"
        )
    return "\n".join(rows)


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
    from matplotlib.patches import Patch

    names = [n for n in ORDER if n in results["loaders"]]
    sets = [s for s in ("large", "small") if any(best_sps(results, n, s) for n in names)]
    colors = {"ours": "#1f77b4", "baseline": "#7f7f7f", "ceiling": "#2ca02c"}
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 0.45 * len(names) + 1.8), squeeze=False)
    for ax, s in zip(axes[0], sets):
        vals = [best_sps(results, n, s) or 0.0 for n in names]
        groups = [results["loaders"][n].get("group", "baseline") for n in names]
        y = list(range(len(names)))[::-1]
        ax.barh(y, [max(v, 1e-2) for v in vals], color=[colors.get(g, "#999") for g in groups])
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlim(right=max([*vals, 1.0]) * 3)
        ax.set_yticks(y)
        ax.set_yticklabels(names)
        for yi, v in zip(y, vals):
            ax.text(max(v, 1e-2) * 1.05, yi, "failed" if v == 0 else f"{v:.1f}", va="center", fontsize=8)
        shape = "×".join(str(v) for v in results["datasets"][s]["shape"])
        ax.set_title(f"{s} set ({results['datasets'][s]['n_subjects']} × {shape}): samples/s, best workers")
        ax.set_xlabel("random 64³ image+label patches per second, batch 4 (log scale)")
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.legend(handles=[Patch(color=c, label=g) for g, c in colors.items()], loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(f"loader throughput — {results['config']['mode']} run, {results['machine']['summary']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lever_table(levers: dict[str, Any]) -> str:
    if not levers:
        return "_levers not measured in this run (full mode measures them)._"
    rows = ["| experiment | variant | on disk MB | p50 ms | p95 ms | CPU ms | note |", "|---|---|---|---|---|---|---|"]
    for exp in levers.get("experiments", []):
        for v in exp["variants"]:
            rows.append(
                f"| {exp['name']} | {v['variant']} | {_fmt(v.get('bytes', 0) / 1e6) if v.get('bytes') else '–'} | "
                f"{_fmt(v.get('p50_ms'), 2)} | {_fmt(v.get('p95_ms'), 2)} | {_fmt(v.get('cpu_mean_ms'), 2)} | "
                f"{v.get('note', '')} |"
            )
    return "\n".join(rows)


def section(results: dict[str, Any], ratios: dict[str, Any], png_name: str) -> str:
    cfg, mach = results["config"], results["machine"]
    ds = results["datasets"]
    sets = ", ".join(
        f"{k}: {v['n_subjects']} × {'×'.join(map(str, v['shape']))} int16 + uint8 label" for k, v in ds.items()
    )
    checks = results.get("micro", {}).get("_checks", {})
    parts = [
        f"Run `{cfg['mode']}` of {results['started']} on **{mach['summary']}**; load average "
        f"{mach['loadavg_start']:.1f} at start, {mach['loadavg_end']:.1f} at end "
        f"({'shared machine: timings taken under load' if max(mach['loadavg_start'], mach['loadavg_end']) > 0.5 * mach['cpus'] else 'quiet machine'}); "
        f"total {results['elapsed_s'] / 60:.1f} min. Data: {sets}. Batch {cfg['batch_size']}, patch "
        f"{'×'.join(map(str, cfg['patch']))}, image+label per sample, workers {cfg['workers']}, "
        f"{cfg['repeats']} repeats after {cfg['warmup_batches']} warm-up batch(es). "
        f"Versions: {mach['versions']}.",
        "",
        "Targets (large set; ratios from this run):",
        "",
        ratio_table(ratios),
        "",
        f"Large set ({'×'.join(map(str, ds['large']['shape']))}):",
        "",
        results_table(results, "large"),
        "",
        f"![throughput](results/{png_name})",
        "",
        f"Correctness: {checks.get('compared', 0)} reads compared voxel-for-voxel across layouts, "
        f"{len(checks.get('mismatches', []))} mismatches.",
    ]
    failures = [
        f"{n} {k}: {len(r.get('failures', [r.get('error')]))}× {r.get('error') or r['failures'][0]}"
        for n, e in results["loaders"].items()
        for k, r in e.get("runs", {}).items()
        if "error" in r or r.get("failures")
    ] + [f"{n}: {e['error']}" for n, e in results["loaders"].items() if "error" in e]
    if failures:
        parts += ["", "Failures recorded (not hangs of the run):", ""] + [f"- {f}" for f in failures]
    return "\n".join(parts)


def update_readme(readme: str, mode: str, text: str) -> None:
    start, end = f"<!-- BENCH:{mode}:start -->", f"<!-- BENCH:{mode}:end -->"
    body = ""
    if os.path.exists(readme):
        with open(readme) as f:
            body = f.read()
    block = f"{start}\n{text}\n{end}"
    if start in body and end in body:
        body = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip() + f"\n\n{block}\n"
    with open(readme, "w") as f:
        f.write(body)


def update_readme_levers(readme: str, text: str) -> None:
    update_readme(readme, "levers", text)
