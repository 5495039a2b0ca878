"""``radiobundles check`` finds, and ``--repair`` fixes, each kind of damage a killed writer
leaves; it never deletes a volume or a label version.

Each damaged store is made by a real kill: an ingest worker dies by ``SIGKILL`` just before
the store write that would have completed the step (found in the writer's own log of store
writes, see :func:`~tests.harness.kill.arm_store_kill`). Damage a kill can no
longer produce with this version's write order (a stale foreground index trusted by readers,
a torn metadata file, a row without its volume) is made by reproducing the exact files.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tiledb

from radiobject_adapter import RadiObject
from radiobject_adapter.cli import main
from radiobject_adapter.config import reset_caches
from radiobject_adapter.store.check import check_store
from radiobject_adapter.store.dataframe import read_dataframe, write_rows
from radiobject_adapter.store.labels import ensure_foreground_index
from tests.harness.kill import ForkServer, read_op_log

# every test here starts from stores made by real SIGKILLed ingests (forked workers): seconds each
pytestmark = pytest.mark.slow

KILL_POINTS_TEST = str(Path(__file__).with_name("test_kill_points.py"))


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    """A fork server, the inputs of a 2-subject CT+seg ingest, its store writes, and a
    reference store it completed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_kill_points_cases", KILL_POINTS_TEST)
    cases = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cases  # dataclasses look their module up there
    spec.loader.exec_module(cases)  # the sibling test's inputs and writers
    root = tmp_path_factory.mktemp("check")
    with ForkServer(preload=["radiobject_adapter.io.ingest"], modules={"t": KILL_POINTS_TEST}) as server:
        case = cases._make_case("nifti_ingest", root / "case", server)
        log = root / "ops.log"
        ref = root / "reference"
        _spawn(server, root, ref, case.inputs, op_log=str(log))
        yield server, root, case, read_op_log(str(log)), ref


def _spawn(
    server: ForkServer, root: Path, store: Path, inputs: dict, kill_at: int | None = None, op_log: str = ""
) -> int:
    worker = server.spawn(
        "t:run_writer",
        log=str(root / "w.log"),
        writer="nifti_ingest",
        store=str(store),
        inputs=inputs,
        kill_at=kill_at,
        op_log=op_log or None,
    )
    return worker.wait(timeout=300)


def _after(ops: list[str], label: str, start: int) -> int:
    """Index (0-based) of the first ``label`` write at or after ``start``."""
    return next(i for i in range(start, len(ops)) if ops[i] == label)


def _killed_before(kills, index: int, name: str) -> Path:
    server, root, case, _, _ = kills
    store = root / name
    shutil.rmtree(store, ignore_errors=True)
    assert _spawn(server, root, store, case.inputs, kill_at=index + 1) == -9
    reset_caches()
    return store


def _assert_found_repaired_clean(store: Path, kind: str) -> None:
    found = check_store(str(store))
    assert kind in found.kinds(), found.summary()
    assert found.exit_code == 2
    repaired = check_store(str(store), repair=True)
    assert repaired.exit_code == 1, repaired.summary()
    assert all(f.repaired for f in repaired.findings if f.kind == kind)
    assert check_store(str(store)).exit_code == 0


def _rerun_completes(kills, store: Path) -> None:
    server, root, case, _, _ = kills
    assert _spawn(server, root, store, case.inputs) == 0
    reset_caches()
    radi = RadiObject(str(store))
    for name in ("CT", "seg"):
        assert radi.collection(name).subject_ids == sorted(case.contents[name])
        assert len(radi.collection(name).obs) == len(case.contents[name])
    assert check_store(str(store)).exit_code == 0


def test_check_restores_the_obs_row_of_a_volume_registered_by_a_killed_ingest(kills) -> None:
    ops, ref = kills[3], kills[4]
    first_data = _after(ops, "dense.write", 0)
    store = _killed_before(kills, _after(ops, "sparse.write", first_data), "pending")
    radi = RadiObject(str(store))
    assert radi.CT.subject_ids == [] and radi.CT.pending == ["case_a_CT"]  # hidden, not half-listed
    assert main(["check", str(store)]) == 2
    assert main(["check", str(store), "--repair"]) == 1
    assert main(["check", str(store)]) == 0
    row = read_dataframe(f"{store}/collections/CT/obs").set_index("obs_id").loc["case_a_CT"]
    expected = read_dataframe(f"{ref}/collections/CT/obs").set_index("obs_id").loc["case_a_CT"]
    assert row.to_dict() == expected.to_dict()  # the row a completed ingest writes, from the volume alone
    _rerun_completes(kills, store)


def test_rerun_of_an_ingest_killed_before_a_row_writes_the_row_and_not_the_volume_again(kills) -> None:
    ops = kills[3]
    first_data = _after(ops, "dense.write", 0)
    store = _killed_before(kills, _after(ops, "sparse.write", first_data), "pending_rerun")
    server, root, case, _, _ = kills
    assert _spawn(server, root, store, case.inputs) == 0
    reset_caches()
    radi = RadiObject(str(store))
    assert radi.CT.subject_ids == ["case_a", "case_b"]
    with tiledb.Group(f"{store}/collections/CT/volumes") as grp:
        assert len(grp) == 2  # case_a's volume was not written twice
    assert check_store(str(store)).exit_code == 0


def test_check_removes_a_half_written_volume_folder_of_a_dead_writer(kills) -> None:
    ops = kills[3]
    first_data = _after(ops, "dense.write", 0)
    store = _killed_before(kills, _after(ops, "array.commit", first_data), "orphan")  # voxels, no metadata
    _assert_found_repaired_clean(store, "orphan_folder")
    assert not os.path.exists(f"{store}/collections/CT/volumes/0")
    _rerun_completes(kills, store)


def test_check_registers_a_complete_volume_a_killed_ingest_did_not_register(kills) -> None:
    ops = kills[3]
    first_data = _after(ops, "dense.write", 0)
    added = _after(ops, "group.add", first_data)
    store = _killed_before(kills, _after(ops, "group.commit", added), "unregistered")
    _assert_found_repaired_clean(store, "unregistered_volume")
    assert RadiObject(str(store)).CT.subject_ids == ["case_a"]
    _rerun_completes(kills, store)


def test_check_completes_a_collection_whose_creation_was_killed(kills) -> None:
    ops = kills[3]
    store = _killed_before(kills, _after(ops, "group.commit", _after(ops, "array.create", 0)), "collection")
    report = check_store(str(store))
    assert report.kinds() & {"incomplete_collection", "unregistered_collection"}, report.summary()
    assert check_store(str(store), repair=True).exit_code == 1
    assert check_store(str(store)).exit_code == 0
    _rerun_completes(kills, store)


def test_check_rewrites_counters_and_subject_rows_a_killed_ingest_left_out(kills) -> None:
    ops = kills[3]
    store = _killed_before(kills, len(ops) - 1 - ops[::-1].index("sparse.write"), "subjects")  # the table's rows
    _assert_found_repaired_clean(store, "missing_subject_rows")
    assert sorted(RadiObject(str(store)).obs_meta["obs_subject_id"]) == ["case_a", "case_b"]
    _rerun_completes(kills, store)


def test_check_rebuilds_a_foreground_index_that_describes_older_voxels(kills, tmp_path: Path) -> None:
    # the files a prediction overwrite killed between its voxels and its metadata used to leave
    store = tmp_path / "store"
    shutil.copytree(kills[4], store)
    uri = RadiObject(str(store)).seg.uri_of("case_a")
    new = np.zeros((8, 8, 8), np.uint8)
    new[:2] = 2
    with tiledb.open(uri, "w") as arr:
        arr[:] = new
    reset_caches()
    _assert_found_repaired_clean(store, "stale_foreground_index")
    index = ensure_foreground_index(RadiObject(str(store)).seg["case_a"], persist=False)
    assert index.counts == {0: 384, 2: 128}


def test_check_drops_a_torn_metadata_file_of_a_killed_writer(kills, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(kills[4], store)
    torn = store / "collections" / "CT" / "__meta" / "__1_1_00000000000000000000000000000000"
    torn.write_bytes(b"")  # a metadata write killed after creating its file
    _assert_found_repaired_clean(store, "torn_metadata")
    assert not torn.exists()


def test_check_reports_a_row_without_volume_and_never_drops_it(kills, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(kills[4], store)
    write_rows(f"{store}/collections/CT/obs", [{"obs_subject_id": "case_z", "obs_id": "case_z_CT"}])
    report = check_store(str(store), repair=True)
    assert "row_without_volume" in report.kinds() and report.exit_code == 2
    assert "case_z_CT" in set(read_dataframe(f"{store}/collections/CT/obs")["obs_id"])


def test_check_leaves_a_folder_alone_while_another_writer_is_alive(kills) -> None:
    from radiobject_adapter.store.lease import WriterLease

    ops = kills[3]
    first_data = _after(ops, "dense.write", 0)
    store = _killed_before(kills, _after(ops, "array.commit", first_data), "alive")
    lease = WriterLease(str(store), tiledb.VFS())  # this process: a live writer
    lease.refresh()
    try:
        report = check_store(str(store), repair=True)
        assert "orphan_folder" not in report.kinds() and "unregistered_folder" in report.kinds()
        assert os.path.exists(f"{store}/collections/CT/volumes/0")
    finally:
        lease.release()
