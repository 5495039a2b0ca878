"""Smoke test of the benchmark harness: tiny volumes, one repeat, the contenders the target
ratios need, all in one process. Checks that the JSON, the PNG and the README table are
written and that every ratio is computed (the numbers themselves mean nothing here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTENDERS = "ours-iso,ours-v0,radiobject-iso,monai-niigz,monai-persistent,blosc2-nnunet"

pytest.importorskip("blosc2")
pytest.importorskip("radiobject")
pytest.importorskip("matplotlib")
pytest.importorskip("psutil")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_tiny_run_writes_json_png_table_and_ratios(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# bench\n\n<!-- BENCH:tiny:start -->\nold\n<!-- BENCH:tiny:end -->\n")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--mode",
            "tiny",
            "--contenders",
            CONTENDERS,
            "--data-dir",
            str(tmp_path / "data"),
            "--results-dir",
            str(tmp_path / "results"),
            "--readme",
            str(readme),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results" / "tiny.json").read_text())
    png = tmp_path / "results" / "tiny_throughput.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every contender produced a loader measurement, and the reads agreed voxel for voxel
    for name in CONTENDERS.split(","):
        run = results["loaders"][name]["runs"]["large/w0"]
        assert run.get("samples_per_s", 0) > 0, (name, run)
    assert results["micro"]["_checks"]["compared"] > 0
    assert results["micro"]["_checks"]["mismatches"] == []
    # every target ratio computed, with a verdict, for the current code and the proposal
    for ours in ("ours-iso", "ours-v0"):
        ratios = results["ratios"][ours]
        assert len(ratios) == 7
        for key, r in ratios.items():
            assert r["value"] is not None and r["pass"] in (True, False), (ours, key, r)
    text = readme.read_text()
    assert "old" not in text and "| contender |" in text and ("PASS" in text or "FAIL" in text)
    assert "random 64³ patch p50" in proc.stdout and ("PASS" in proc.stdout or "FAIL" in proc.stdout)
    # tiny stays tiny: the work it did is counted (the bounds of the tiny settings), not timed
    tiny = results["config"]
    assert tiny["mode"] == "tiny" and [d["n_subjects"] for d in tiny["datasets"]] == [2]
    for name in CONTENDERS.split(","):
        timed = results["loaders"][name]["runs"]["large/w0"]["batches_timed"]
        assert 1 <= timed <= tiny["repeats"] * tiny["batches_per_repeat"], (name, timed)
    print(f"tiny benchmark run: {elapsed:.0f} s")
