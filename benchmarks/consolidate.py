"""Store open / listing / table reads before and after ``radiobundles consolidate``.

Builds a store the way it grows in use: ``--subjects`` tiny CT volumes ingested from NIfTI
files (one ``obs`` fragment, one group member file and one subject-table fragment each), and
``--labels`` label arrays saved ``--versions`` times each through the label app's
``write_version`` (a fragment, records and a foreground index per save). Times, each the median
of ``--repeat`` fresh opens (caches reset):

* ``open``: ``RadiObject(uri)`` and its collection names;
* ``list``: every collection's volume listing (``subject_ids``: the group, every array's ids);
* ``obs``: every collection's ``obs`` table and the subject table.

Then ``consolidate_store`` runs, the same is timed again, and every label version is read
back by time travel and compared with what was saved.

Example::

    python -m benchmarks.consolidate --subjects 500 --labels 20 --versions 5 --out /tmp/consolidate_store
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["build_store", "main", "measure"]


def build_store(root: Path, subjects: int, labels: int, versions: int, shape: int = 8) -> tuple[str, dict]:
    """The store, and ``{(label uri, version): saved voxels}`` of every label version."""
    from monailabel_app.lib.store_access import StoreAccess
    from radiobject_adapter.io.ingest import ingest_niftis

    rng = np.random.default_rng(0)
    nifti = root / "nifti"
    nifti.mkdir(parents=True)
    for i in range(subjects):
        data = rng.integers(-100, 100, size=(shape,) * 3, dtype=np.int16)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(nifti / f"case{i:04d}.nii.gz"))
    table = root / "subjects.csv"
    table.write_text("subject_id,age\n" + "".join(f"case{i:04d},{20 + i % 60}\n" for i in range(subjects)))
    store = str(root / "store")
    ingest_niftis(store, {"CT": str(nifti)}, obs_meta=str(table), progress=True)
    access = StoreAccess(store, "CT", "seg")
    saved: dict = {}
    for i in range(labels):
        for v in range(versions):
            data = rng.integers(0, 3, size=(shape,) * 3, dtype=np.uint8)
            ts = access.save(f"case{i:04d}", "final", data, {"annotator": "bench", "info": {"v": v}})
            saved[(access.label_uri(f"case{i:04d}"), ts)] = data
    return store, saved


def _timed(fn, repeat: int) -> float:
    from radiobject_adapter.config import reset_caches

    times = []
    for _ in range(repeat):
        reset_caches()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(store: str, repeat: int) -> dict[str, float]:
    """Median seconds of opening, listing every collection, reading every table."""
    from radiobject_adapter import RadiObject

    def open_() -> None:
        RadiObject(store).collection_names  # noqa: B018

    def list_() -> None:
        radi = RadiObject(store)
        for name in radi.collection_names:
            radi.collection(name).subject_ids  # noqa: B018

    def obs() -> None:
        radi = RadiObject(store)
        for name in radi.collection_names:
            radi.collection(name).obs  # noqa: B018
        radi.obs_meta  # noqa: B018

    return {"open": _timed(open_, repeat), "list": _timed(list_, repeat), "obs": _timed(obs, repeat)}


def _files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="/tmp/radiobundles_consolidate_bench")
    parser.add_argument("--reuse", action="store_true", help="measure the store an earlier run built in --out")
    args = parser.parse_args(argv)

    from radiobject_adapter.store.check import check_store
    from radiobject_adapter.store.consolidate import consolidate_store
    from radiobject_adapter.store.label_versions import list_versions, read_version

    root = Path(args.out)
    if args.reuse and (root / "store").is_dir():  # a store an earlier run built (building takes long)
        store = str(root / "store")
    else:
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        store, _ = build_store(root, args.subjects, args.labels, args.versions)
        print(
            f"built {store}: {args.subjects} CT volumes, {args.labels} labels x {args.versions} versions "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    from radiobject_adapter import RadiObject

    radi = RadiObject(store)
    saved = {  # every label version as read before consolidating
        (uri, v.version): read_version(uri, v.version)
        for uri in (radi.seg.uri_of(s) for s in radi.seg.subject_ids)
        for v in list_versions(uri)
    }
    before, files_before = measure(store, args.repeat), _files(store)
    t0 = time.perf_counter()
    consolidate_store(store, progress=False)
    took = time.perf_counter() - t0
    after, files_after = measure(store, args.repeat), _files(store)

    for (uri, ts), data in saved.items():  # every label version still there, by time travel
        assert ts in [v.version for v in list_versions(uri)], (uri, ts)
        np.testing.assert_array_equal(read_version(uri, ts), data)
    report = check_store(store)
    print(
        f"consolidate: {took:.2f} s; files {files_before} -> {files_after}; "
        f"{len(saved)} label versions read back by time travel; check: exit {report.exit_code}"
    )
    print("| step | before (s) | after (s) | speed-up |")
    print("|---|---|---|---|")
    for key in ("open", "list", "obs"):
        print(f"| {key} | {before[key]:.3f} | {after[key]:.3f} | {before[key] / max(after[key], 1e-9):.1f}x |")
    return 0 if report.exit_code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
