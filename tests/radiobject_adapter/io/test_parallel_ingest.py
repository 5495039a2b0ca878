"""Parallel ingest: N processes or Ray tasks write one store through their writer leases."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject_adapter import RadiObject, ingest_niftis
from radiobject_adapter.store.check import check_store
from radiobject_adapter.synthetic import SyntheticDataset, make_ct_dataset


def _assert_same_store(uri: str, reference: str) -> None:
    """Same volumes (by obs_id, voxel for voxel), same subject table as ``reference``."""
    radi, ref = RadiObject(uri), RadiObject(reference)
    assert radi.collection_names == ref.collection_names
    for name in ref.collection_names:
        col, want = radi.collection(name), ref.collection(name)
        assert col.subject_ids == want.subject_ids  # each subject exactly once
        assert len(col.obs) == len(want.obs)
        for sid in want.subject_ids:
            np.testing.assert_array_equal(col[sid].to_numpy(), want[sid].to_numpy())
    cols = sorted(ref.obs_meta.columns)
    got = radi.obs_meta[cols].sort_values("obs_subject_id").reset_index(drop=True)
    exp = ref.obs_meta[cols].sort_values("obs_subject_id").reset_index(drop=True)
    assert got.equals(exp)


@pytest.mark.slow
def test_two_workers_write_the_store_one_process_writes_and_a_rerun_adds_nothing(
    synthetic_ct: SyntheticDataset, ct_store: str, tmp_path: Path
) -> None:
    uri = str(tmp_path / "store")
    images = {"CT": synthetic_ct.images_dir, "seg": synthetic_ct.labels_dir}
    report = ingest_niftis(uri, images, obs_meta=synthetic_ct.subject_table, tile_extent=16, progress=False, workers=2)
    assert report.ok and report.n_written == 2 * len(synthetic_ct.subject_ids), report.summary()
    assert not report.redone
    _assert_same_store(uri, ct_store)
    assert check_store(uri).clean
    again = ingest_niftis(uri, images, obs_meta=synthetic_ct.subject_table, tile_extent=16, progress=False, workers=2)
    assert again.n_written == 0 and sorted(again.already_present["CT"]) == synthetic_ct.subject_ids


def _kill_one_worker_when_volumes_appear(store: Path, stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL one pool worker (a child of the forkserver, a child of this process) as soon as the
    first volume folder exists, i.e. while the workers are writing."""
    import psutil

    volumes = store / "collections" / "CT" / "volumes"
    while not stop.is_set():
        # a member folder (TileDB's own entries start with "__")
        if volumes.is_dir() and any(not name.startswith("__") for name in os.listdir(volumes)):
            for child in psutil.Process().children():
                if "forkserver" in " ".join(child.cmdline()):
                    workers = child.children()
                    if workers:
                        os.kill(workers[0].pid, signal.SIGKILL)
                        killed.append(workers[0].pid)
                        return
        time.sleep(0.002)


@pytest.mark.slow
def test_a_killed_worker_has_its_subject_redone_never_duplicated(tmp_path: Path) -> None:
    # small tiles and a slow codec (as the serial kill tests): the kill lands inside writes
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=6, shape_range=((40, 48), (40, 48), (30, 36)), seed=5)
    store = tmp_path / "store"
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_one_worker_when_volumes_appear, args=(store, stop, killed), daemon=True)
    watcher.start()
    try:
        report = ingest_niftis(
            str(store),
            {"CT": ds.images_dir, "seg": ds.labels_dir},
            tile_extent=8,
            compression="zstd",
            compression_level=12,
            progress=False,
            workers=2,
        )
    finally:
        stop.set()
        watcher.join()
    assert killed, "no worker was killed"
    _assert_every_subject_once_after_a_death(report, store, ds)


def _assert_every_subject_once_after_a_death(report, store: Path, ds: SyntheticDataset) -> None:
    assert report.ok, report.summary()
    assert report.redone, "the run did not notice the dead worker"
    radi = RadiObject(str(store))
    sources = {"CT": ds.images, "seg": ds.labels}
    for name in ("CT", "seg"):
        col = radi.collection(name)
        assert col.subject_ids == ds.subject_ids  # each exactly once
        assert len(col.obs) == len(ds.subject_ids)
        for sid, path in zip(ds.subject_ids, sources[name]):
            np.testing.assert_array_equal(col[sid].to_numpy(), np.asanyarray(nib.load(path).dataobj))
    # what the killed worker left (an unregistered folder at most) is for `check --repair`
    assert not {f.kind for f in check_store(str(store)).problems} - {"unregistered_volume"}
    again = ingest_niftis(str(store), {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False, workers=2)
    assert again.n_written == 0


@pytest.mark.slow
def test_a_worker_killed_while_subjects_are_still_handed_out_has_them_all_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool starts its workers as subjects are submitted, so a worker can die (OOM, kill)
    # before the last subject is handed out; the pool then refuses further submits. CI once
    # met this by chance in the test above (BrokenProcessPool out of ingest_niftis). Here the
    # third submit kills a worker first and waits until the pool knows it is broken.
    from concurrent.futures import ProcessPoolExecutor

    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=6, shape_range=((24, 32), (24, 32), (16, 20)), seed=5)
    store = tmp_path / "store"
    real_submit, submits, killed = ProcessPoolExecutor.submit, [], []

    def submit(pool, fn, /, *args, **kwargs):
        submits.append(fn)
        if len(submits) == 3 and not killed:
            pid = next(iter(pool._processes))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            deadline = time.monotonic() + 60
            while not pool._broken and time.monotonic() < deadline:
                time.sleep(0.01)
            assert pool._broken, "the pool never noticed its dead worker"
        return real_submit(pool, fn, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    report = ingest_niftis(str(store), {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False, workers=2)
    assert killed and len(submits) > 6  # the kill came while subjects were handed out; a 2nd round ran
    _assert_every_subject_once_after_a_death(report, store, ds)


@pytest.mark.slow
def test_ray_tasks_ingest_into_an_s3_store_as_one_process_does(
    synthetic_ct: SyntheticDataset, ct_store: str, use_s3
) -> None:
    """``ray_address="local"``: a Ray of 2 CPUs (no dashboard, 100 MB object store), one task per
    subject, writing to the loopback S3 server; shut down by the ingest that started it."""
    ray = pytest.importorskip("ray")
    uri = f"s3://{use_s3.bucket}/parallel_ingest_ray"
    images = {"CT": synthetic_ct.images_dir, "seg": synthetic_ct.labels_dir}
    report = ingest_niftis(
        uri, images, obs_meta=synthetic_ct.subject_table, tile_extent=16, progress=False, workers=2, ray_address="local"
    )
    assert report.ok and report.n_written == 2 * len(synthetic_ct.subject_ids), report.summary()
    assert not ray.is_initialized()
    _assert_same_store(uri, ct_store)
    assert check_store(uri).clean


def test_workers_below_one_is_an_error_before_anything_is_written(tmp_path: Path) -> None:
    from radiobject_adapter import IngestError

    with pytest.raises(IngestError, match="workers must be 1 or more"):
        ingest_niftis(str(tmp_path / "store"), {"CT": str(tmp_path)}, workers=0, progress=False)
    assert not (tmp_path / "store").exists()


def test_cli_passes_workers_and_ray_address_to_the_ingest() -> None:
    from radiobject_adapter.cli import _parser

    args = _parser().parse_args(["ingest", "store", "-c", "CT=imagesTr", "--workers", "3", "--ray", "auto"])
    assert (args.workers, args.ray) == (3, "auto")
    assert _parser().parse_args(["ingest", "store", "-c", "CT=imagesTr"]).workers == 1
