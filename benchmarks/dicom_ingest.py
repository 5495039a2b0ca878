"""Ingest speed, DICOM series vs NIfTI, per GB of voxel data, through the `radiobundles ingest` command.

The same synthetic int16 CT volumes are written as ``.nii.gz``, as ``.nii`` and as DICOM
series (one uncompressed file per slice), then each form is ingested into a fresh store by the
command line, timed as a child process (wall and CPU seconds). Results go to a JSON file.

Run: ``python -m benchmarks.dicom_ingest --subjects 4 --shape 256 256 100 --out /tmp/dicom_bench``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import nibabel as nib
import numpy as np

from radiobject_adapter.testing.dicom import write_dicom_series


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _timed(cmd: list[str]) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 256, 100])
    parser.add_argument("--out", default="dicom_ingest_bench")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(0)
    affine = np.diag([0.7, 0.7, 1.5, 1.0])
    for i in range(args.subjects):
        sid = f"case_{i:03d}"
        # smooth-ish CT-like content (compressible like real scans, unlike pure noise)
        base = rng.integers(-100, 100, size=[s // 8 for s in args.shape]).astype(np.int16)
        vol = np.kron(base, np.ones((8, 8, 8), np.int16))[: args.shape[0], : args.shape[1], : args.shape[2]]
        vol = (vol + rng.integers(-20, 20, size=vol.shape)).astype(np.int16)
        for folder, ext in (("nii_gz", ".nii.gz"), ("nii", ".nii")):
            os.makedirs(os.path.join(out, folder), exist_ok=True)
            nib.save(nib.Nifti1Image(vol, affine), os.path.join(out, folder, f"{sid}{ext}"))
        write_dicom_series(os.path.join(out, "dicom", sid), vol, affine, patient_id=sid, shuffle=True)
    voxel_bytes = args.subjects * int(np.prod(args.shape)) * 2
    results = {"subjects": args.subjects, "shape": args.shape, "voxel_gb": voxel_bytes / 1e9, "runs": {}}
    for form in ("nii_gz", "nii", "dicom"):
        store = os.path.join(out, f"store_{form}")
        cmd = [sys.executable, "-m", "radiobject_adapter.cli", "ingest", store, "-c", f"CT={os.path.join(out, form)}"]
        run = _timed([*cmd, "--no-progress"])
        run["input_mb"] = round(_du(os.path.join(out, form)) / 1e6, 1)
        run["s_per_voxel_gb"] = round(run["wall_s"] / results["voxel_gb"], 1)
        run["cpu_s_per_voxel_gb"] = round(run["cpu_s"] / results["voxel_gb"], 1)
        results["runs"][form] = run
    results["load_average"] = os.getloadavg()
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
