"""The `radiobundles` console script as a data engineer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from radiobject_adapter import RadiObject
from radiobject_adapter.synthetic import make_ct_dataset

EXE = str(Path(sys.executable).with_name("radiobundles"))


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "0"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120)


def test_ingest_command_writes_store_shows_progress_and_info_describes_it(tmp_path: Path) -> None:
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=3, shape_range=((16, 20), (16, 20), (8, 10)), seed=2)
    store = str(tmp_path / "store")
    done = _run(
        "ingest",
        store,
        "-c",
        f"CT={ds.images_dir}/*_0000.nii.gz",
        "-c",
        f"seg={ds.labels_dir}",
        "--obs-meta",
        ds.subject_table,
        "--tiling",
        "axial",
    )
    assert done.returncode == 0, done.stderr
    assert "6/6" in done.stderr  # tqdm: files done / total
    assert "CT: 3 written" in done.stdout
    radi = RadiObject(store)
    assert radi.CT.iloc[0].tile_shape[2] == 1
    info = _run("info", store, "--json")
    described = json.loads(info.stdout)
    assert described["subjects"] == 3 and described["collections"]["seg"]["dtypes"] == ["uint8"]
    assert set(described["subject_table_columns"]) == {"diagnosis", "age"}


def test_rejected_subject_gives_exit_3_and_the_rest_is_written(tmp_path: Path) -> None:
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=3, shape_range=((16, 20), (16, 20), (8, 10)), seed=2)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), ds.labels[0])
    done = _run(
        "ingest", str(tmp_path / "store"), "-c", f"CT={ds.images_dir}", "-c", f"seg={ds.labels_dir}", "--no-progress"
    )
    assert done.returncode == 3
    assert "REJECTED case_000" in done.stdout and "run the same command again" in done.stderr
    assert RadiObject(str(tmp_path / "store")).CT.subject_ids == ["case_001", "case_002"]


def test_bad_input_gives_exit_2_with_a_message_and_no_store(tmp_path: Path) -> None:
    done = _run("ingest", str(tmp_path / "store"), "-c", f"CT={tmp_path}/missing/*.nii.gz")
    assert done.returncode == 2 and "matched no image files" in done.stderr
    assert not (tmp_path / "store").exists()
    done = _run("info", str(tmp_path))
    assert done.returncode == 2 and "is not a radiobundles store" in done.stderr


def test_index_foreground_command_indexes_old_label_volumes(ct_store: str, tmp_path: Path) -> None:
    import shutil

    import tiledb

    from radiobject_adapter.store.foreground import FOREGROUND_KEYS

    copy = tmp_path / "old"
    shutil.copytree(ct_store, copy)
    for vol in RadiObject(str(copy)).seg:
        with tiledb.open(vol.uri, "w") as arr:
            for key in FOREGROUND_KEYS:
                del arr.meta[key]
    done = _run("index-foreground", str(copy), "-c", "seg", "--no-progress")
    assert done.returncode == 0, done.stderr
    n = len(RadiObject(str(copy)).seg)
    assert f"seg: indexed {n} volume(s)" in done.stdout
    assert all(set(FOREGROUND_KEYS) <= set(v.metadata) for v in RadiObject(str(copy)).seg)


def test_ingest_accepts_tif_folders_as_collections(tmp_path: Path) -> None:
    import tifffile

    from radiobject_adapter.cli import main

    for kind in ("edente", "dente"):
        (tmp_path / kind).mkdir()
        for i in range(2):
            tifffile.imwrite(tmp_path / kind / f"img_000{i}.tif", np.full((8, 6), i + 1, dtype=np.uint16))
    store = str(tmp_path / "store")
    args = [
        "ingest",
        store,
        "-c",
        f"edente={tmp_path / 'edente'}",
        "-c",
        f"dente={tmp_path / 'dente'}",
        "--no-progress",
    ]
    assert main(args) == 0
    vol = RadiObject(store).collection("dente")["img_0001"]
    assert vol.shape == (8, 6, 1) and vol.tile_shape == (8, 6, 1)
    assert main(args) == 0  # resumable
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    mixed = ["ingest", str(tmp_path / "s2"), "-c", f"dente={tmp_path / 'dente'}", "-c", f"CT={tmp_path / 'ct.nii.gz'}"]
    assert main([*mixed, "--no-progress"]) == 2
