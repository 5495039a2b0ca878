"""The `radiobundles` console script as a data engineer runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject_adapter import RadiObject
from radiobject_adapter.synthetic import make_ct_dataset

EXE = str(Path(sys.executable).with_name("radiobundles"))


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "0"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow  # runs the CLI in subprocesses: ~20 s
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


@pytest.mark.slow  # runs the CLI in subprocesses: ~20 s
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


# -- locations where no store can be written: one line saying what to do, exit status 2 ------------
def _small_nifti(tmp_path: Path):
    return make_ct_dataset(str(tmp_path / "nifti"), n_subjects=1, shape_range=((16, 17), (16, 17), (8, 9)), seed=1)


def test_ingest_into_a_regular_file_says_so_and_leaves_it(tmp_path: Path) -> None:
    ds = _small_nifti(tmp_path)
    target = tmp_path / "notes.txt"
    target.write_text("not a store")
    for where in (target, target / "store"):
        done = _run("ingest", str(where), "-c", f"CT={ds.images_dir}", "--no-progress")
        assert done.returncode == 2, done.stderr
        assert "is a regular file" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert target.read_text() == "not a store"


def _read_only_mount(path: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with ``path`` bind-mounted read-only (a private mount namespace: root
    ignores permission bits, but not a read-only mount)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, str(path), *command], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow  # runs the CLI in subprocesses: ~20 s
def test_ingest_into_a_read_only_store_says_so_and_changes_nothing(tmp_path: Path) -> None:
    probe = _read_only_mount(tmp_path, ["true"])
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()[:200]}")
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=2, shape_range=((16, 17), (16, 17), (8, 9)), seed=1)
    store = tmp_path / "store"
    assert _run("ingest", str(store), "-c", f"CT={ds.images[0]}", "--no-progress").returncode == 0
    before = sorted(str(p) for p in store.rglob("*"))
    done = _read_only_mount(store, [EXE, "ingest", str(store), "-c", f"CT={ds.images_dir}", "--no-progress"])
    assert done.returncode == 2, done.stderr
    assert "is read-only" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(str(p) for p in store.rglob("*")) == before
    assert RadiObject(str(store)).CT.subject_ids == ["case_000"]


@pytest.mark.integration  # starts the loopback S3 server (moto)
def test_ingest_into_a_missing_bucket_names_the_endpoint_and_credentials(s3_session, tmp_path: Path) -> None:
    ds = _small_nifti(tmp_path)
    env = {**os.environ, **s3_session.process_env, "TQDM_DISABLE": "1"}
    cmd = [EXE, "ingest", "s3://no-such-bucket/store", "-c", f"CT={ds.images_dir}", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"bucket 'no-such-bucket' not found at endpoint {s3_session.endpoint_override}" in line
    assert "AWS_ENDPOINT_URL_S3" in line and "AWS_ACCESS_KEY_ID" in line


@pytest.mark.integration  # starts the loopback S3 server (moto)
def test_ingest_into_s3_without_an_endpoint_says_to_set_one(s3_session, tmp_path: Path) -> None:
    ds = _small_nifti(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "RADIOBUNDLES_S3_"))}
    cmd = [EXE, "ingest", f"s3://{s3_session.bucket}/store", "-c", f"CT={ds.images_dir}", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**env, "TQDM_DISABLE": "1"}, timeout=300)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "AWS S3 (AWS_ENDPOINT_URL_S3 is not set)" in line and "set AWS_ENDPOINT_URL_S3" in line
