"""Every store writer, killed at every store write it makes: nothing lost, nothing torn.

For each writer (NIfTI ingest, a second ingest that appends subjects and updates the subject
table, TIF ingest, DICOM series ingest with its key tags, the label app's label save, prediction write-back, the foreground-index
build, consolidation) a counting run logs each TileDB write, metadata put/delete, group
add, commit, consolidation and folder removal it makes (``N`` of them, see
:func:`~tests.harness.kill.arm_store_kill`). Then, for ``n = 1..N``, a worker
forked from one preloaded server runs the writer on a fresh copy of its starting store and
dies by ``SIGKILL`` just before its ``n``-th write. After each kill:

* the store opens, and ``radiobundles check`` finds no damage (only what a rerun or
  ``check --repair`` completes: a hidden pending volume, an orphan folder, stale counters);
* every visible volume has exactly one ``obs`` row that agrees with it (ids, shape, source),
  and its voxels are one of the planned contents; each listed label version is complete;
* ``check --repair`` on a copy leaves a store that checks clean;
* rerunning the writer completes it: every subject exactly once, every row there, every
  save once, the foreground index of the newest voxels, and the store checks clean.

The full enumeration is marked ``exhaustive`` (``make test-exhaustive``); ``make test`` takes a
few points per writer (where a volume becomes visible, where its row is written, the last write).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import tiledb

from radiobject_adapter import RadiObject
from radiobject_adapter.config import reset_caches
from radiobject_adapter.store.check import check_store
from radiobject_adapter.store.foreground import COUNTS_KEY
from radiobject_adapter.store.labels import ensure_foreground_index
from tests.harness.kill import ForkServer, arm_store_kill, read_op_log

SHAPE = (8, 8, 8)
SUBJECTS = ("case_a", "case_b", "case_c")
DICOM_SHAPE = (8, 8, 6)  # 8x8 pixels, 6 slices


def _dicom_age(i: int) -> str:
    return f"0{40 + i}Y"  # PatientAge, one per subject: each obs_meta row must be its own subject's


# ---------------------------------------------------------------------------------------------
# the writers (run in forked workers)
# ---------------------------------------------------------------------------------------------
def _nifti_ingest(store: str, inputs: dict) -> None:
    from radiobject_adapter.io.ingest import ingest_niftis

    images = {"CT": inputs["ct"], "seg": inputs["seg"]}
    ingest_niftis(store, images, obs_meta=inputs["table"], progress=False, tile_extent=8)


def _tif_ingest(store: str, inputs: dict) -> None:
    from radiobject_adapter.io.tif import ingest_tifs

    ingest_tifs(store, {"dente": inputs["tif"]}, progress=False)


def _dicom_ingest(store: str, inputs: dict) -> None:
    from radiobject_adapter.io.dicom_ingest import ingest_dicoms

    ingest_dicoms(store, {"CT": inputs["dicom"]}, progress=False, tile_extent=8)


def _label_saves(store: str, inputs: dict) -> None:
    from monailabel_app.lib.store_access import StoreAccess
    from radiobject_adapter.store.label_versions import list_versions

    access = StoreAccess(store, "CT", "seg", listing_ttl=0.0)
    for save in inputs["plan"]:
        uri = access.label_uri(save["image"])
        if uri and any(v.info.get("save_id") == save["save_id"] for v in list_versions(uri)):
            continue  # a rerun: this save is in the store
        data = np.load(save["file"])
        access.save(save["image"], "final", data, {"annotator": "ann", "info": {"save_id": save["save_id"]}})


def _prediction_writes(store: str, inputs: dict) -> None:
    from radiobundles.ct3d.store_output import write_label_volume

    for item in inputs["plan"]:
        write_label_volume(store, "pred", item["image"], np.load(item["file"]), np.eye(4), source=item["source"])


def _foreground_index(store: str, inputs: dict) -> None:
    from radiobject_adapter.store.labels import index_collection

    index_collection(RadiObject(store).seg, progress=False)


def _consolidate(store: str, inputs: dict) -> None:
    from radiobject_adapter.store.consolidate import consolidate_store

    consolidate_store(store, progress=False)


WRITERS: dict[str, Callable[[str, dict], None]] = {
    "nifti_ingest": _nifti_ingest,
    "ingest_more": _nifti_ingest,
    "tif_ingest": _tif_ingest,
    "dicom_ingest": _dicom_ingest,
    "label_save": _label_saves,
    "prediction_write": _prediction_writes,
    "foreground_index": _foreground_index,
    "consolidate": _consolidate,
}


def _ct_ingest(store: str, inputs: dict) -> None:
    from radiobject_adapter.io.ingest import ingest_niftis

    ingest_niftis(store, {"CT": inputs["ct"]}, progress=False, tile_extent=8)


def run_writer(writer: str, store: str, inputs: dict, kill_at: int | None = None, op_log: str | None = None) -> None:
    """Worker entry: arm the store-write kill (or just count), then run the writer."""
    arm_store_kill(kill_at, op_log)
    (WRITERS.get(writer) or _ct_ingest)(store, inputs)


# ---------------------------------------------------------------------------------------------
# the test process: inputs, starting stores, expectations
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    inputs: dict
    base: Path | None  # the store the writer starts from (None: no store yet)
    # collection -> subject -> every content a visible volume may hold (the last is the final one)
    contents: dict[str, dict[str, list[np.ndarray]]]


def _nifti(path: Path, data: np.ndarray) -> str:
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _make_case(writer: str, root: Path, server: ForkServer) -> Case:
    rng = np.random.default_rng(sum(map(ord, writer)))
    root.mkdir(parents=True)
    (root / "ct").mkdir()
    (root / "seg").mkdir()
    subjects = SUBJECTS[:2] if writer != "ingest_more" else SUBJECTS
    contents: dict[str, dict[str, list[np.ndarray]]] = {"CT": {}, "seg": {}}
    for sid in subjects:
        ct = rng.integers(-100, 100, size=SHAPE, dtype=np.int16)
        seg = rng.integers(0, 3, size=SHAPE, dtype=np.uint8)
        _nifti(root / "ct" / f"{sid}.nii.gz", ct)
        _nifti(root / "seg" / f"{sid}.nii.gz", seg)
        contents["CT"][sid], contents["seg"][sid] = [ct], [seg]
    table = root / "subjects.csv"
    table.write_text("subject_id,age\n" + "".join(f"{s},{40 + i}\n" for i, s in enumerate(subjects)))
    inputs: dict[str, Any] = {"ct": str(root / "ct"), "seg": str(root / "seg"), "table": str(table)}
    if writer == "dicom_ingest":
        from radiobject_adapter.testing.dicom import write_dicom_series

        contents = {"CT": {}}
        affine = np.diag([0.8, 0.8, 2.0, 1.0])
        for i, sid in enumerate(subjects):
            hu = rng.integers(-1000, 1000, size=DICOM_SHAPE, dtype=np.int16)
            write_dicom_series(root / "dicom" / sid, hu, affine, patient_id=sid, extra={"PatientAge": _dicom_age(i)})
            contents["CT"][sid] = [hu]
        return Case({"dicom": str(root / "dicom")}, None, contents)
    if writer in ("nifti_ingest", "tif_ingest"):
        if writer == "tif_ingest":
            import tifffile

            (root / "tif").mkdir()
            contents = {"dente": {}}
            for sid in subjects:
                img = rng.integers(0, 255, size=SHAPE[:2], dtype=np.uint8)
                tifffile.imwrite(root / "tif" / f"{sid}.tif", img)
                contents["dente"][sid] = [img[:, :, np.newaxis]]
            inputs["tif"] = str(root / "tif")
        return Case(inputs, None, contents)
    base = root / "base"
    if writer == "ingest_more":  # the first two subjects are in already, without a table
        first = root / "first"
        first.mkdir()
        (first / "ct").mkdir()
        (first / "seg").mkdir()
        for sid in SUBJECTS[:2]:
            shutil.copy(root / "ct" / f"{sid}.nii.gz", first / "ct")
            shutil.copy(root / "seg" / f"{sid}.nii.gz", first / "seg")
        _run(server, "nifti_ingest", str(base), {**inputs, "ct": str(first / "ct"), "seg": str(first / "seg")}, root)
        return Case(inputs, base, contents)
    _run(server, "ct_ingest" if writer in ("label_save", "consolidate") else "nifti_ingest", str(base), inputs, root)
    if writer == "foreground_index":  # a store from before the index existed
        for vol in RadiObject(str(base)).seg:
            with tiledb.open(vol.uri, "w") as arr:
                for key in ("foreground_index", "foreground_counts", "foreground_index_version"):
                    del arr.meta[key]
        reset_caches()
        return Case(inputs, base, contents)
    if writer in ("label_save", "prediction_write", "consolidate"):
        plan = []
        order = [("case_a", 0), ("case_a", 1), ("case_b", 0)]  # a new array, a new version, a new array
        new: dict[str, list[np.ndarray]] = {}
        for i, (sid, _) in enumerate(order):
            data = rng.integers(0, 3, size=SHAPE, dtype=np.uint8)
            np.save(root / f"save{i}.npy", data)
            plan.append({"save_id": f"s{i}", "image": sid, "file": str(root / f"save{i}.npy"), "source": f"src{i}"})
            new.setdefault(sid, []).append(data)
        inputs["plan"] = plan
        name = "pred" if writer == "prediction_write" else "seg"
        if writer == "consolidate":  # label versions to keep: consolidate a store the app saved into
            _run(server, "label_save", str(base), inputs, root)
            new = {sid: [versions[-1]] for sid, versions in new.items()}
        kept = {"seg": contents["seg"]} if writer == "prediction_write" else {}  # ingested labels stay
        return Case(inputs, base, {**kept, "CT": contents["CT"], name: new})
    raise KeyError(writer)


def _run(
    server: ForkServer, writer: str, store: str, inputs: dict, root: Path, kill_at: int | None = None, op_log: str = ""
) -> int:
    """Run ``writer`` in a forked worker (killed before its ``kill_at``-th store write)."""
    out = str(root / "worker.log")
    worker = server.spawn(
        "t:run_writer", log=out, writer=writer, store=store, inputs=inputs, kill_at=kill_at, op_log=op_log or None
    )
    code = worker.wait(timeout=300)
    if kill_at is None and code != 0:
        raise AssertionError(f"{writer} failed: {Path(out).read_text()[-3000:]}")
    return code


# ---------------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------------
def _assert_consistent(store: Path, case: Case, writer: str, final: bool) -> None:
    """The invariants after a kill (``final=False``) or after a completed run (``final=True``)."""
    reset_caches()
    if not final and tiledb.object_type(str(store)) != "group":
        return  # killed before the store's root existed: nothing written, the rerun creates it
    report = check_store(str(store))
    damage = [f.line() for f in report.findings if f.severity == "damage"]
    assert not damage, report.summary()
    if final:
        assert report.exit_code == 0, report.summary()
    if not final and "incomplete_root" in report.kinds():
        return  # the root's creation was cut short: readers say so clearly, the rerun completes it
    radi = RadiObject(str(store))
    if final:
        assert set(radi.collection_names) == set(case.contents)
    for name in radi.collection_names:
        col = radi.collection(name)
        obs = col.obs
        assert len(set(col.obs_ids)) == len(col.obs_ids), f"{name}: a volume listed twice"
        for obs_id, sid, vol in zip(col.obs_ids, col.subject_ids, col):
            rows = obs[obs["obs_id"] == obs_id]
            assert len(rows) == 1, f"{name}/{obs_id}: {len(rows)} obs rows"
            row = rows.iloc[0]
            assert row["obs_subject_id"] == sid
            assert row["dimensions"] == str(tuple(vol.shape[:3]))
            assert row["source_path"] == str(vol.metadata["source_path"])
            data = vol.to_numpy()
            allowed = case.contents[name][sid]
            assert any(np.array_equal(data, a) for a in allowed), f"{name}/{sid}: voxels of no planned content"
            if final:
                np.testing.assert_array_equal(data, allowed[-1])
            if name != "CT" and name != "dente":  # labels: the index readers use is the voxels'
                index = ensure_foreground_index(vol, persist=False)
                counts = np.bincount(data.ravel().astype(np.int64))
                assert index.counts == {int(c): int(counts[c]) for c in np.flatnonzero(counts)}
                if final and writer == "foreground_index":
                    assert COUNTS_KEY in vol.metadata
        if final:
            assert sorted(col.subject_ids) == sorted(case.contents[name])
            assert len(obs) == len(col.subject_ids)
    if writer in ("label_save", "consolidate"):
        _assert_label_versions(radi, case, final)
    if final and writer in ("nifti_ingest", "ingest_more"):
        table = radi.obs_meta.set_index("obs_subject_id")
        assert sorted(table.index) == sorted(case.contents["CT"])
        assert [int(table.at[s, "age"]) for s in sorted(table.index)] == [40 + i for i in range(len(table))]
    if final and writer == "dicom_ingest":  # the key tags of every subject, exactly once
        table = radi.obs_meta
        assert sorted(table["obs_subject_id"]) == sorted(case.contents["CT"])
        table = table.set_index("obs_subject_id")
        for i, sid in enumerate(sorted(case.contents["CT"])):
            assert table.at[sid, "patient_age"] == _dicom_age(i)
            assert (table.at[sid, "modality"], table.at[sid, "study_date"]) == ("CT", "20260101")
            assert table.at[sid, "manufacturer"] == "radiobundles synthetic"


def _assert_label_versions(radi: RadiObject, case: Case, final: bool) -> None:
    from radiobject_adapter.store.label_versions import list_versions, read_version

    planned = {item["save_id"]: np.load(item["file"]) for item in case.inputs["plan"]}
    seen: list[str] = []
    for sid in radi.seg.subject_ids if "seg" in radi.collection_names else []:
        uri = radi.seg.uri_of(sid)
        for v in list_versions(uri):  # every listed version is whole and one planned save
            data = read_version(uri, v.version)
            save_id = v.info.get("save_id")
            assert save_id in planned, f"version {v.version} of {sid} has no planned record: {v}"
            np.testing.assert_array_equal(data, planned[save_id])
            seen.append(save_id)
    if final:
        assert sorted(seen) == sorted(planned), "every save exactly once"


# ---------------------------------------------------------------------------------------------
# enumeration
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    preload = [
        "radiobject_adapter.io.ingest",
        "radiobject_adapter.io.tif",
        "radiobject_adapter.io.dicom_ingest",
        "pydicom",
        "radiobject_adapter.store.check",
        "radiobject_adapter.store.consolidate",
        "monailabel_app.lib.store_access",
        "radiobundles.ct3d.store_output",
    ]
    with ForkServer(preload=preload, modules={"t": __file__}) as srv:
        yield srv


def _fast_points(ops: list[str]) -> list[int]:
    """A few kill points (1-based, the write killed before): the first write, the first
    volume's registration and its row (the window of issue 13), and the last write."""
    points = {1, len(ops)}
    first_data = next((i for i, op in enumerate(ops) if op == "dense.write"), None)
    if first_data is not None:
        add = next((i for i in range(first_data, len(ops)) if ops[i] == "group.add"), None)
        row = next((i for i in range(first_data, len(ops)) if ops[i] == "sparse.write"), None)
        points |= {i + 1 for i in (add, row) if i is not None}
    return sorted(points)


_TILEDB_NAME = re.compile(r"^__\d+_\d+_[0-9a-f]{32}(_\d+)?(\.\w+)?$")


def _disk_state(store: Path) -> tuple[tuple[str, str], ...]:
    """The store's files, with TileDB's timestamp/uuid names (fragments, metadata, commits,
    group files) reduced to ``*`` and leases left out: two kills that leave the same files
    (a kill before a buffered metadata put or group add writes nothing the previous point
    did not) give the same state, whose checks need not run twice."""
    out = []
    for folder, _dirs, files in os.walk(store):
        rel = os.path.relpath(folder, store)
        if rel.split(os.sep)[0] == ".writers":
            continue
        rel = "/".join("*" if _TILEDB_NAME.match(p) else p for p in rel.split(os.sep))
        out.extend((rel, "*" if _TILEDB_NAME.match(f) else f) for f in files)
    return tuple(sorted(out))


def enumerate_kill_points(writer: str, tmp: Path, server: ForkServer, fast: bool) -> tuple[int, list[str], int]:
    """Count ``writer``'s store writes, then kill it before each (or the fast few) and check
    every distinct state left; returns ``(N, the writes, distinct states checked)``."""
    case = _make_case(writer, tmp / "case", server)

    def fresh(path: Path) -> Path:
        if case.base is not None:
            shutil.copytree(case.base, path)
        return path

    op_log = tmp / "ops.log"
    counted = fresh(tmp / "count")
    _run(server, writer, str(counted), case.inputs, tmp, op_log=str(op_log))
    ops = read_op_log(str(op_log))
    assert ops, f"{writer} made no store write"
    _assert_consistent(counted, case, writer, final=True)
    checked: set[tuple] = set()
    # KILL_POINTS_FROM=n starts the full enumeration at point n (to reproduce one quickly)
    first = int(os.environ.get("KILL_POINTS_FROM", "1"))
    for n in _fast_points(ops) if fast else range(first, len(ops) + 1):
        store = fresh(tmp / f"kill{n}")
        code = _run(server, writer, str(store), case.inputs, tmp, kill_at=n)
        assert code == -9, f"{writer}: worker was not killed before write {n} ({ops[n - 1]})"
        state = _disk_state(store)
        if state in checked:  # the same files as a kill point already checked
            shutil.rmtree(store, ignore_errors=True)
            continue
        checked.add(state)
        try:
            _assert_consistent(store, case, writer, final=False)
            if tiledb.object_type(str(store)) == "group":
                repaired = tmp / f"repaired{n}"
                shutil.copytree(store, repaired)
                assert check_store(str(repaired), repair=True).exit_code in (0, 1)
                after = check_store(str(repaired))
                assert after.exit_code == 0, after.summary()
                shutil.rmtree(repaired)
            _run(server, writer, str(store), case.inputs, tmp)  # the rerun
            _assert_consistent(store, case, writer, final=True)
        except AssertionError as err:
            raise AssertionError(f"{writer}, killed before write {n} of {len(ops)} ({ops[n - 1]}): {err}") from err
        shutil.rmtree(store, ignore_errors=True)
    return len(ops), ops, len(checked)


def _record(writer: str, n: int, ops: list[str], states: int) -> None:
    from collections import Counter

    print(f"KILLPOINTS {writer}: N={n} distinct states checked={states} {json.dumps(Counter(ops))}")


@pytest.mark.slow
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writer_killed_at_chosen_store_writes_leaves_a_valid_store_and_rerun_completes(
    writer: str, tmp_path: Path, server: ForkServer
) -> None:
    _record(writer, *enumerate_kill_points(writer, tmp_path, server, fast=True))


@pytest.mark.slow
@pytest.mark.exhaustive  # every kill point of every writer: make test-exhaustive (make test runs the subset above)
@pytest.mark.timeout(3600)  # up to ~150 kill points per writer on a busy 2-core machine
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writer_killed_at_every_store_write_leaves_a_valid_store_and_rerun_completes(
    writer: str, tmp_path: Path, server: ForkServer
) -> None:
    _record(writer, *enumerate_kill_points(writer, tmp_path, server, fast=False))
