#!/usr/bin/env python
"""How much of radiobject's own test suite passes on ``radiobject_adapter``.

Runs the tests of radiobject's 0.1.1 sdist twice, unedited: once on radiobject itself and once
on ours through an import shim that maps radiobject's modules onto ours
(``radiobject`` -> ``radiobject_adapter``, ``radiobject.ml`` -> ``radiobject_adapter.ml``, ...;
table :data:`MODULES`). Nothing in the tests' bodies, assertions or conftest is changed.

Their fixtures read the MSD brain-tumour dataset through a ``radiobject.data`` module that
the sdist does not ship; the shim provides it over a small synthetic stand-in with the
dataset's layout and BraTS shape (240 x 240 x 155 x 4 images, 3D labels), written here. The
DICOM dataset is not provided, so DICOM tests skip on both sides; S3 tests skip without AWS.

The sdist comes from the package index: ``--download`` fetches it with ``pip download`` into
``--cache`` (default ``~/.cache/radiobundles/radiobject-compat``); without ``--download`` the
script uses what the cache holds and stops if it holds nothing. Tests never download.

Usage:
    python scripts/radiobject_compat.py --download              # fetch, run both, print counts
    python scripts/radiobject_compat.py --only ours -k test_volume
    python scripts/radiobject_compat.py --json report.json

Printed: per test file, tests passing on radiobject / on ours / on both, and the share of
those passing on radiobject that pass on ours, over all files and over the public-API files
(without radiobject internals out of scope: imaging_metadata, orientation, streaming, writers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

__all__ = ["INTERNAL_FILES", "MODULES", "find_sdist", "main", "make_dataset", "run_suite"]

VERSION = "0.1.1"
DEFAULT_CACHE = Path.home() / ".cache" / "radiobundles" / "radiobject-compat"
# radiobject's module -> ours. Modules not listed (radiobject internals: orientation,
# streaming, writers) do not import.
MODULES = {
    "radiobject": "radiobject_adapter",
    "radiobject.ctx": "radiobject_adapter.ctx",
    "radiobject.parallel": "radiobject_adapter.parallel",
    "radiobject.stats": "radiobject_adapter.stats",
    "radiobject.volume": "radiobject_adapter.volume",
    "radiobject.volume_collection": "radiobject_adapter.store.collection",
    "radiobject.radi_object": "radiobject_adapter.store.radiobject",
    "radiobject.ml": "radiobject_adapter.ml",
    "radiobject.ml.config": "radiobject_adapter.data.config",
    "radiobject.ml.datasets": "radiobject_adapter.ml.datasets",
    "radiobject.ml.datasets.collection_dataset": "radiobject_adapter.ml.datasets",
    "radiobject.ml.datasets.segmentation_dataset": "radiobject_adapter.ml.datasets",
    "radiobject.ml.factory": "radiobject_adapter.ml.factory",
    "radiobject.ml.distributed": "radiobject_adapter.ml.distributed",
    "radiobject.ml.compat": "radiobject_adapter.ml",
    "radiobject.dataframe": "radiobject_adapter.dataframe",
    "radiobject.imaging_metadata": "radiobject_adapter.imaging_metadata",
    "radiobject.indexing": "radiobject_adapter.indexing",
    "radiobject.ingest": "radiobject_adapter.ingest",
    "radiobject.query": "radiobject_adapter.query",
    "radiobject.utils": "radiobject_adapter.utils",
}
# Test files about radiobject internals the issue leaves out of scope.
INTERNAL_FILES = ("test_imaging_metadata.py", "test_orientation.py", "test_streaming.py", "test_writers.py")
SHAPE = (240, 240, 155)

SHIM = '''
"""pytest plugin written by scripts/radiobject_compat.py: radiobject.data, and the module map."""
import importlib, importlib.util, json, os, sys, types
from pathlib import Path

DATA = Path(os.environ["RBCOMPAT_DATA"])
if os.environ["RBCOMPAT_TARGET"] == "ours":
    for name, target in json.loads(os.environ["RBCOMPAT_MODULES"]).items():
        if importlib.util.find_spec(target) is not None:  # a module we lack: its tests fail to import
            sys.modules[name] = importlib.import_module(target)
import radiobject

data = types.ModuleType("radiobject.data")
data.S3_BUCKET, data.S3_REGION = "radiobject-compat-no-bucket", "us-east-1"


def get_dataset(name):
    if not (DATA / name / "manifest.json").is_file():
        raise FileNotFoundError(f"dataset {name!r} is not provided by the compatibility shim")
    return DATA / name


def get_manifest(name):
    return json.loads((get_dataset(name) / "manifest.json").read_text())


data.get_dataset, data.get_manifest, data.get_dataset_path = get_dataset, get_manifest, get_dataset
sys.modules["radiobject.data"] = data
'''


def find_sdist(cache: Path, download: bool) -> Path:
    """The unpacked sdist folder in ``cache``; fetched with pip only when ``download``."""
    root = cache / f"radiobject-{VERSION}"
    if (root / "test").is_dir():
        return root
    archive = cache / f"radiobject-{VERSION}.tar.gz"
    if not archive.is_file():
        if not download:
            raise SystemExit(
                f"radiobject {VERSION}'s sdist is not in {cache}; run again with --download to fetch it "
                "from the package index"
            )
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*cmd, f"radiobject=={VERSION}", "-d", str(cache)], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return root


def make_dataset(root: Path, n_subjects: int = 4, shape: tuple[int, int, int] = SHAPE) -> Path:
    """A stand-in for MSD Task01 BrainTumour: ``imagesTr/BRATS_00i.nii.gz`` (``shape`` x 4
    float32, BraTS' 240x240x155 by default), ``labelsTr`` (uint8 classes 0-3) and
    ``manifest.json`` as radiobject reads it. Kept under ``root/<shape>/``."""
    import nibabel as nib
    import numpy as np

    root = root / "x".join(str(n) for n in shape)
    ds = root / "msd-brain-tumour"
    if (ds / "manifest.json").is_file():
        return root
    (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
    (ds / "labelsTr").mkdir(parents=True, exist_ok=True)
    grid = np.ogrid[: shape[0], : shape[1], : shape[2]]
    scale = min(shape) / min(SHAPE)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    manifest = []
    for i in range(1, n_subjects + 1):
        sid = f"BRATS_{i:03d}"
        centre = [n // 2 + (i % 3) for n in shape]
        dist = sum((g - c) ** 2 for g, c in zip(grid, centre)) / scale**2
        brain = (dist < 80**2).astype(np.float32)
        image = np.stack([brain * (200 + 50 * c + i) for c in range(4)], axis=-1)
        label = np.zeros(shape, np.uint8)
        label[dist < 20**2], label[dist < 12**2], label[dist < 6**2] = 1, 2, 3
        nib.save(nib.Nifti1Image(image, affine), ds / "imagesTr" / f"{sid}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), ds / "labelsTr" / f"{sid}.nii.gz")
        manifest.append(
            {"sample_id": sid, "image_path": f"imagesTr/{sid}.nii.gz", "label_path": f"labelsTr/{sid}.nii.gz"}
        )
    (ds / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root


def run_suite(
    sdist: Path, data: Path, target: str, work: Path, pytest_args: list[str], timeout_s: int = 300
) -> dict[str, str]:
    """Run the sdist's tests on ``target`` (``radiobject`` or ``ours``); ``{test id: outcome}``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "rbcompat_shim.py").write_text(SHIM)
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\ntestpaths = test\npython_files = test_*.py\n")
    junit = work / f"junit-{target}.xml"
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "RBCOMPAT_DATA": str(data),
        "RBCOMPAT_TARGET": target,
        "RBCOMPAT_MODULES": json.dumps(MODULES),
        "PYTHONPATH": os.pathsep.join([str(work), str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(key, None)  # their S3 tests must skip, not reach out
    cmd = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(sdist), "-p", "rbcompat_shim"]
    cmd += ["-p", "no:cacheprovider", "-q", f"--timeout={timeout_s}", f"--junitxml={junit}"]
    cmd += ["--continue-on-collection-errors", *pytest_args]
    subprocess.run(cmd, cwd=sdist, env=env, check=False)
    return parse_junit(junit)


def parse_junit(path: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    if not path.is_file():
        return outcomes
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes[test_id] = outcome
    return outcomes


def _file_of(test_id: str) -> str:
    module = test_id.split("::")[0] or test_id.split("::")[1]  # a collection error has no class
    parts = module.split(".")
    name = next((p for p in reversed(parts) if p.startswith("test_")), parts[-1])
    return ("ml/" if ".ml." in f".{module}." else "") + name + ".py"


def summarise(theirs: dict[str, str], ours: dict[str, str]) -> dict:
    """Counts per file and in total (see the module docstring)."""
    per_file: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for test_id in sorted(set(theirs) | set(ours)):
        row = per_file[_file_of(test_id)]
        if test_id.startswith("::"):  # the file did not import: its tests never ran
            row["import_errors"] += 1
            continue
        row["tests"] += 1
        a, b = theirs.get(test_id) == "passed", ours.get(test_id) == "passed"
        row["radiobject"] += a
        row["ours"] += b
        row["both"] += a and b

    def total(files: list[str]) -> dict[str, float]:
        t = {k: sum(per_file[f].get(k, 0) for f in files) for k in ("tests", "radiobject", "ours", "both")}
        t["share"] = round(t["both"] / t["radiobject"], 3) if t["radiobject"] else 0.0
        return t

    files = sorted(per_file)
    public = [f for f in files if not f.endswith(INTERNAL_FILES)]
    ml = [f for f in files if f.startswith("ml/")]
    return {
        "per_file": {f: dict(per_file[f]) for f in files},
        "all": total(files),
        "public_api": total(public),
        "ml": total(ml),
    }


def print_report(report: dict) -> None:
    print(f"\n{'file':38} {'tests':>6} {'radiobject':>11} {'ours':>6} {'both':>6}")
    for name, row in report["per_file"].items():
        failed_import = "  (did not import on one side)" if row.get("import_errors") else ""
        print(
            f"{name:38} {row.get('tests', 0):6} {row.get('radiobject', 0):11} {row.get('ours', 0):6} "
            f"{row.get('both', 0):6}{failed_import}"
        )
    for key in ("all", "public_api", "ml"):
        t = report[key]
        print(
            f"{key}: {t['tests']} tests; {t['radiobject']} pass on radiobject {VERSION}, {t['ours']} on ours; "
            f"{t['both']} of radiobject's passing tests pass on ours ({t['share']:.0%})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the sdist and data are kept")
    parser.add_argument("--download", action="store_true", help="fetch the sdist from the package index if missing")
    parser.add_argument("--only", choices=("radiobject", "ours"), help="run on one side only")
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per test (radiobject's loaders can hang)")
    parser.add_argument(
        "--shape",
        type=lambda text: tuple(int(n) for n in text.split("x")),
        default=SHAPE,
        help="stand-in image shape, e.g. 64x64x40 for a quick run (tests asserting BraTS' "
        "240x240x155 then fail on both sides and leave the comparison)",
    )
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (-k ..., test/ml)")
    args = parser.parse_args(argv)
    sdist = find_sdist(args.cache, args.download)
    data = make_dataset(args.cache / "data", shape=args.shape)
    work = Path(tempfile.mkdtemp(prefix="rbcompat-"))
    sides = [args.only] if args.only else ["radiobject", "ours"]
    results = {side: run_suite(sdist, data, side, work / side, args.pytest_args, args.timeout) for side in sides}
    report = summarise(results.get("radiobject", {}), results.get("ours", {}))
    report["outcomes"] = results
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
