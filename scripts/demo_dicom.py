"""`make demo-dicom`: Orthanc -> DICOMweb ingest -> ct_segmentation_3d inference -> DICOM SEG -> Orthanc.

Run: ``make demo-dicom`` (or ``.venv/bin/python scripts/demo_dicom.py --out demo_dicom_output``).
Needs the Debian packages ``orthanc`` and ``orthanc-dicomweb``. Steps:

1. writes synthetic CT-like subjects (NIfTI, as ``make demo``) and turns each CT into a DICOM
   series (one file per slice, shuffled instance numbers), labels of the last subjects held out;
2. starts Orthanc with its DICOMweb plugin on 127.0.0.1 and stores the series there (STOW-RS);
3. ingests them into a TileDB store with ``radiobundles ingest store -c CT --dicomweb ...``
   (QIDO query ``Modality=CT``, resumable download), the training labels from NIfTI beside them;
4. trains the bundle briefly from the store (a model good enough to show the path, not a result);
5. runs inference on the held-out subjects with ``--dicom_seg_dir`` / ``--dicom_seg_stow``: each
   prediction becomes a DICOM SEG referencing its source series and is stored back in Orthanc;
6. checks: Orthanc lists one SEG per held-out subject, and each SEG read back (highdicom) equals
   the prediction written to the store, voxel for voxel, on the source grid.

Everything lands in the output folder; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo import _bundle, _run  # the NIfTI demo's helpers

CLASS_NAMES = ["background", "structure_1", "structure_2"]  # as the bundle's metadata.json names them


def _make_data(root: str, n_labelled: int, n_test: int, seed: int) -> tuple[Any, list[str]]:
    """Synthetic CT subjects (NIfTI) with as many classes as the bundle names; last ``n_test`` labels held out."""
    from radiobject_adapter.synthetic import make_ct_dataset

    ds = make_ct_dataset(
        root,
        n_subjects=n_labelled + n_test,
        shape_range=((48, 64), (48, 64), (32, 48)),
        n_classes=len(CLASS_NAMES) - 1,
        oblique=True,
        seed=seed,
    )
    held_out = ds.subject_ids[n_labelled:]
    for sid in held_out:
        os.remove(os.path.join(ds.labels_dir, f"{sid}.nii.gz"))
    return ds, held_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo_dicom_output")
    parser.add_argument("--subjects", type=int, default=6, help="labelled subjects (train + validation)")
    parser.add_argument("--test-subjects", type=int, default=2, help="held-out subjects: inference -> SEG")
    parser.add_argument("--epochs", type=int, default=3, help="a short run: the point is the DICOM path")
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pydicom import dcmread

    from radiobject_adapter import RadiObject
    from radiobject_adapter.io.dicom_seg import read_dicom_seg_labels
    from radiobject_adapter.io.dicomweb import _client, store_instances
    from radiobject_adapter.testing.dicom import write_dicom_series
    from radiobject_adapter.testing.orthanc import orthanc_available, orthanc_server

    if not orthanc_available():
        raise SystemExit("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
    t_start = time.perf_counter()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    store, log_dir = os.path.join(out, "store"), os.path.join(out, "logs")
    dicom_dir, seg_dir = os.path.join(out, "dicom_source"), os.path.join(out, "dicom_seg")
    os.makedirs(log_dir)

    n_total = args.subjects + args.test_subjects
    print(f"[1/6] writing {n_total} synthetic CT subjects as DICOM series ({args.test_subjects} held out) ...")
    ds, held_out = _make_data(os.path.join(out, "nifti"), args.subjects, args.test_subjects, args.seed)
    files: list[str] = []
    for sid, image in zip(ds.subject_ids, ds.images, strict=True):
        img = nib.load(image)
        hu = np.asanyarray(img.dataobj).astype(np.int16)
        files += write_dicom_series(os.path.join(dicom_dir, sid), hu, img.affine, patient_id=sid, shuffle=True)

    with orthanc_server(storage=os.path.join(out, "orthanc_db")) as srv:
        print(f"[2/6] Orthanc + DICOMweb on {srv.dicomweb_url}: storing {len(files)} files (STOW-RS) ...")
        for start in range(0, len(files), 200):
            store_instances(srv.dicomweb_url, [dcmread(f) for f in files[start : start + 200]])

        print("[3/6] ingesting from DICOMweb into a TileDB store, labels from NIfTI ...")
        cmd = [sys.executable, "-m", "radiobject_adapter.cli", "ingest", store, "-c", "CT"]
        cmd += ["--dicomweb", srv.dicomweb_url, "--query", "Modality=CT", "--download-dir", os.path.join(out, "pulled")]
        _run("ingest_dicomweb", cmd, log_dir)
        _run(
            "ingest_labels",
            [sys.executable, "-m", "radiobject_adapter.cli", "ingest", store, "-c", f"seg={ds.labels_dir}"],
            log_dir,
        )

        shared = {"dataset_dir": store, "patch_size": [args.patch_size] * 3, "num_workers": 0}
        shared["ckpt_dir"] = os.path.join(out, "models")
        print(f"[4/6] training the bundle briefly ({args.epochs} epochs) ...")
        train = {**shared, "max_epochs": args.epochs, "batch_size": 2, "patches_per_volume": 2}
        train.update(log_dir=os.path.join(out, "tensorboard"), output_dir=os.path.join(out, "eval"), seed=args.seed)
        train["val_interval"] = args.epochs
        _run("train", _bundle("train.json", train), log_dir)

        print("[5/6] inference on the held-out subjects -> DICOM SEG -> Orthanc (STOW-RS) ...")
        infer = {**shared, "split": "unlabelled", "output_dir": os.path.join(out, "predictions")}
        infer.update(pred_collection="pred", dicom_seg_dir=seg_dir, dicom_seg_stow=srv.dicomweb_url)
        infer["bundle_root"] = os.path.dirname(
            os.path.dirname(_bundle("inference.json", {})[5])
        )  # SEG names: metadata.json
        _run("inference", _bundle("inference.json", infer), log_dir)

        print("[6/6] checking the SEGs in Orthanc against the predictions ...")
        segs_on_server = _client(srv.dicomweb_url).search_for_series(search_filters={"Modality": "SEG"})
        radi = RadiObject(store)
        checks = {}
        for sid in held_out:
            meta = radi.collection("CT").get(sid).metadata
            back = read_dicom_seg_labels(
                os.path.join(seg_dir, f"{sid}_seg.dcm"), json.loads(meta["dicom_sop_instance_uids"])
            )
            pred = radi.collection("pred").get(sid).to_numpy()
            checks[sid] = {
                "seg_equals_prediction": bool(np.array_equal(back, pred)),
                "classes": sorted(map(int, np.unique(pred))),
            }
    summary = {
        "segs_in_orthanc": len(segs_on_server),
        "held_out": held_out,
        "checks": checks,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    print(json.dumps(summary, indent=2))
    ok = len(segs_on_server) == len(held_out) and all(c["seg_equals_prediction"] for c in checks.values())
    print(f"{'OK' if ok else 'FAILED'}: SEG files in {seg_dir}; store {store}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
