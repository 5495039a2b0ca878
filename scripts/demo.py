"""`make demo`: synthetic CT-like NIfTI data -> TileDB store -> MONAI LoadImaged, end to end.

Run: ``make demo`` (or ``.venv/bin/python scripts/demo.py --out demo_output``).
Everything lands in the output folder; the summary printed at the end says where.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from radiobject_adapter import RadiObject
    from radiobject_adapter.synthetic import make_ct_dataset

    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    data_dir, store = os.path.join(out, "nifti"), os.path.join(out, "store")

    print(f"[1/3] writing {args.subjects} synthetic CT-like subjects (int16 images, uint8 labels) ...")
    ds = make_ct_dataset(
        data_dir,
        n_subjects=args.subjects,
        shape_range=((64, 112), (64, 112), (40, 72)),
        oblique=True,
        seed=args.seed,
    )

    print("[2/3] ingesting with the `radiobundles ingest` command ...")
    cmd = [
        sys.executable,
        "-m",
        "radiobject_adapter.cli",
        "ingest",
        store,
        "-c",
        f"CT={ds.images_dir}",
        "-c",
        f"seg={ds.labels_dir}",
        "--obs-meta",
        ds.subject_table,
    ]
    print("  $ radiobundles " + " ".join(cmd[3:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    ingest_s = time.perf_counter() - t0

    print("[3/3] reading back through MONAI LoadImaged with radiobject_adapter.TileDBReader ...")
    radi = RadiObject(store)
    train = radi.datalist(image="CT", label="seg", columns=["diagnosis", "age"], split="train", seed=args.seed)
    val = radi.datalist(image="CT", label="seg", split="validation", seed=args.seed)
    load = Compose(
        [
            LoadImaged(keys=["image", "label"], reader="radiobject_adapter.TileDBReader", expanduser=False),
            EnsureChannelFirstd(keys=["image", "label"]),
        ]
    )
    item = load(train[0])
    rng = np.random.default_rng(0)
    vol = radi.CT[train[0]["subject_id"]]
    times = []
    for _ in range(100):
        start = [int(rng.integers(0, max(1, s - 64))) for s in vol.shape]
        t = time.perf_counter()
        vol[start[0] : start[0] + 64, start[1] : start[1] + 64, start[2] : start[2] + 64]
        times.append(time.perf_counter() - t)

    summary = {
        "store": store,
        "nifti_folder": data_dir,
        "subjects": len(radi),
        "collections": list(radi.collection_names),
        "train_subjects": len(train),
        "validation_subjects": len(val),
        "ingest_seconds": round(ingest_s, 2),
        "store_bytes": _du(store),
        "nifti_gz_bytes": _du(data_dir) - os.path.getsize(ds.subject_table),
        "first_item": {
            "subject_id": train[0]["subject_id"],
            "image_shape": list(item["image"].shape),
            "image_dtype": str(item["image"].dtype),
            "label_classes": sorted(int(c) for c in np.unique(item["label"].numpy())),
            "spacing": [round(float(s), 3) for s in vol.spacing],
        },
        "random_64cube_read_ms_p50": round(1000 * float(np.median(times)), 3),
    }
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    print("\nDemo summary")
    print(
        f"  store:            {store}  ({summary['store_bytes'] / 1e6:.1f} MB vs "
        f"{summary['nifti_gz_bytes'] / 1e6:.1f} MB of .nii.gz)"
    )
    print(f"  subjects:         {summary['subjects']} ({len(train)} train / {len(val)} validation)")
    print(f"  first train item: {summary['first_item']}")
    print(f"  random 64^3 read: {summary['random_64cube_read_ms_p50']} ms (p50)")
    print(f"  summary JSON:     {os.path.join(out, 'summary.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
