"""Killing label saves at varying moments never loses a saved label nor leaves a torn one.

A worker process saves a plan of labels (several versions of several images, two tags, two
annotators, new label arrays and new label collections among them) through
:class:`TileDBDatastore`, as the MONAI Label server does for ``PUT /datastore/label``, and
asks for the NIfTI file of each label it saved (what 3D Slicer downloads next). It is killed
with ``SIGKILL`` again and again, each time at another moment: after a seeded random delay,
at a seeded random Python call, or right inside a write (a new version's record written but
not its voxels; its voxels committed but not its foreground index; a new label array written
but not registered, or registered and nothing after; a NIfTI file of the cache half written).
After every kill:

* the store opens, the datastore lists every image;
* every save the worker had finished (journalled) is listed, exactly once, and reads back
  equal to what was saved: nothing is lost;
* every listed version reads back complete and equal to one planned save (or to the ground
  truth from ingest): a half-done save is either complete or not listed;
* the latest version is what training and 3D Slicer read (``Volume``, ``get_label_uri``), with
  its own foreground index.

Then a worker without a kill saves what is left, and every planned save is there exactly
once, in order. Workers are forked from one process that imported MONAI and TileDB once
(:class:`tests.harness.kill.ForkServer`), so a kill point costs a fraction of a
second rather than a Python start.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from monailabel_app.lib.datastore import TileDBDatastore
from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.config import reset_caches
from radiobject_adapter.store.labels import ensure_foreground_index
from tests.harness.kill import CallCounter, ForkServer, arm_kill

IMAGES = [f"case_{i:03d}" for i in range(6)]
GROUND_TRUTH = ("case_000", "case_001")  # labelled at ingest (conftest's N_LABELLED)


# ---------------------------------------------------------------------------------------------
# the worker (runs in a forked process)
# ---------------------------------------------------------------------------------------------
def _journal(path: str, save_id: str) -> None:
    # one write() of a whole line: a kill leaves whole lines only
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{save_id}\n".encode())
    finally:
        os.close(fd)


def _recorded_ids(ds: TileDBDatastore, plan: list[dict[str, Any]]) -> set[str]:
    keys = {(item["image"], item["tag"]) for item in plan}
    return {
        v["info"]["save_id"]
        for image, tag in keys
        for v in ds.list_label_versions(image, tag)
        if "save_id" in (v.get("info") or {})
    }


def save_labels(
    store: str,
    workspace: str,
    plan: list[dict[str, Any]],
    journal: str,
    kill: dict | None = None,
    kill_from_start: bool = False,
    ready: str = "",
    count: str = "",
    counting: bool = False,
) -> None:
    """Save every planned label not in the store yet, in order; journal each finished save.

    Args:
        kill: :func:`arm_kill` arguments, armed when the saves begin (the datastore open and
            what is done found) or, with ``kill_from_start``, before the datastore opens.
        ready: a file created when the saves begin.
        count: a file to write ``[seconds, calls]`` of the saves into (calls when ``counting``).
    """
    if kill and kill_from_start:
        arm_kill(**kill)
    ds = TileDBDatastore(store, workspace)
    done = _recorded_ids(ds, plan)  # a rerun finishes the work: what the store has is done
    if ready:
        Path(ready).touch()
    if kill and not kill_from_start:
        arm_kill(**kill)
    start = time.monotonic()
    with CallCounter() if counting else contextlib.nullcontext() as counter:
        for item in plan:
            if item["save_id"] in done:
                continue
            info = {"client_id": item["annotator"], "save_id": item["save_id"]}
            ds.save_label(item["image"], item["file"], item["tag"], info)
            _journal(journal, item["save_id"])
            ds.get_label_uri(item["image"], item["tag"])  # the file 3D Slicer downloads next
    if count:
        Path(count).write_text(json.dumps([time.monotonic() - start, counter.calls if counting else 0]))


# ---------------------------------------------------------------------------------------------
# the test process
# ---------------------------------------------------------------------------------------------
def make_plan(project, folder: Path, saves: list[tuple[str, str, int]], seed: int = 0) -> list[dict[str, Any]]:
    """One label file per save ``(image, tag, version)``: random classes 0-2, distinct per save."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    plan = []
    for i, (image, tag, version) in enumerate(saves):
        ref = nib.load(project.images[image])
        label = rng.integers(0, 3, size=ref.shape, dtype=np.uint8)
        path = folder / f"{i:03d}_{image}_{tag}_{version}.nii.gz"
        nib.save(nib.Nifti1Image(label, ref.affine), str(path))
        plan.append(
            {
                "save_id": f"s{i:03d}",
                "image": image,
                "tag": tag,
                "annotator": f"ann{1 + i % 2}",
                "file": str(path),
            }
        )
    return plan


def round_robin(images: dict[tuple[str, str], int]) -> list[tuple[str, str, int]]:
    """Saves of several ``(image, tag) -> n versions`` interleaved, version by version."""
    out, top = [], max(images.values())
    for v in range(top):
        out += [(image, tag, v) for (image, tag), n in images.items() if v < n]
    return out


def expected_labels(plan: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {item["save_id"]: np.asarray(nib.load(item["file"]).dataobj) for item in plan}


def check_store(project, workspace: str, plan: list[dict[str, Any]], journal: str, expected: dict) -> int:
    """Everything a kill must leave intact; returns the number of planned saves in the store."""
    reset_caches()  # read as a new process would: this one keeps arrays open as of earlier reads
    radi = RadiObject(project.store)  # the store opens
    for name in radi.collection_names:
        subjects = radi.collection(name).subject_ids
        assert len(subjects) == len(set(subjects)), f"{name}: a subject twice: {subjects}"
    assert radi.CT.subject_ids == IMAGES
    ds = TileDBDatastore(project.store, workspace)
    assert ds.list_images() == IMAGES
    journalled = Path(journal).read_text().split() if os.path.exists(journal) else []
    truth = {sid: radi.seg[sid].uri for sid in GROUND_TRUTH}
    by_label: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in plan:
        by_label[(item["image"], item["tag"])].append(item["save_id"])
    present = 0
    for (image, tag), planned in by_label.items():
        versions = ds.list_label_versions(image, tag)
        ids = [(v.get("info") or {}).get("save_id") for v in versions]
        recorded = [s for s in ids if s is not None]
        # exactly once, in plan order, no gaps: a save is complete or absent, never half there
        assert recorded == planned[: len(recorded)], f"{image}/{tag}: versions {ids}, planned {planned}"
        unrecorded = [i for i, s in enumerate(ids) if s is None]
        gt = image in truth and tag == "final"
        assert unrecorded == ([0] if gt else []), f"{image}/{tag}: versions without a record: {versions}"
        assert all(v["annotator"] for v, s in zip(versions, ids) if s), versions
        present += len(recorded)
        for v, save_id in zip(versions, ids):  # every listed version is whole and right
            data = ds.access.read(image, tag, v["version"])
            want = expected[save_id] if save_id else Volume(truth[image], timestamp=v["version"]).to_numpy()
            np.testing.assert_array_equal(data, want, err_msg=f"{image}/{tag} version {v['version']} ({save_id})")
        if not versions:
            continue
        latest = expected[ids[-1]] if ids[-1] else ds.access.read(image, tag, versions[-1]["version"])
        # what training reads (the array now) and what Slicer downloads are the latest version
        uri = ds.access.label_uri(image, tag)
        volume = Volume(uri)
        np.testing.assert_array_equal(volume.to_numpy(), latest)
        # the training sampler's index: the stored one, or (none stored) one built from these voxels
        index = ensure_foreground_index(volume, persist=False)
        counts = {int(c): int(n) for c, n in zip(*np.unique(latest, return_counts=True))}
        assert index.counts == counts, f"{image}/{tag}: the foreground index of another version"
        nifti = nib.load(ds.get_label_uri(image, tag))
        np.testing.assert_array_equal(np.asarray(nifti.dataobj), latest)
    lost = set(journalled) - _ids_in_store(ds, by_label)
    assert not lost, f"saves finished before the kill are missing: {sorted(lost)}"
    labelled = {it["subject_id"] for it in ds.datalist()}
    assert labelled == set(GROUND_TRUTH) | {i for (i, t) in by_label if t == "final" and ds.list_label_versions(i, t)}
    return present


def _ids_in_store(ds: TileDBDatastore, by_label: dict[tuple[str, str], list[str]]) -> set[str]:
    return {
        (v.get("info") or {}).get("save_id")
        for image, tag in by_label
        for v in ds.list_label_versions(image, tag)
        if (v.get("info") or {}).get("save_id")
    }


@pytest.fixture(scope="module")
def fork_server():
    """Workers forked from one process that imported the datastore (MONAI, TileDB) once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with ForkServer(preload=["monailabel_app.lib.datastore"], modules={"t": __file__}, env=env) as server:
        assert server.threads <= 2, "the fork server must not run threads (a TileDB pool) before forking"
        yield server


class KillLoop:
    """Runs workers over one store and kills each at a moment of a list of kill specs."""

    def __init__(self, server: ForkServer, project, plan: list[dict[str, Any]], root: Path) -> None:
        self.server, self.project, self.plan, self.root = server, project, plan, root
        self.workspace = str(root / "workspace")
        self.journal = str(root / "journal.txt")
        self.expected = expected_labels(plan)
        self.log = str(root / "workers.log")
        self.landed: list[str] = []  # the kill points that landed
        self.present: list[int] = []  # planned saves in the store after each of them

    def spawn(self, **kwargs: Any):
        return self.server.spawn(
            "t:save_labels",
            log=self.log,
            store=self.project.store,
            workspace=self.workspace,
            plan=self.plan,
            journal=self.journal,
            **kwargs,
        )

    def run(self, spec: dict[str, Any]) -> bool:
        """One kill point: ``{"delay": s}`` after the saves began, from outside, or
        :func:`arm_kill` arguments (plus ``"from_start": True`` to arm it before the datastore
        opens); True if the kill landed (the worker had not finished)."""
        spec = dict(spec)
        if "delay" in spec:
            ready = self.root / "ready"
            ready.unlink(missing_ok=True)
            worker = self.spawn(ready=str(ready))
            while not ready.exists() and worker.poll() is None:
                time.sleep(0.002)
            killed = worker.kill_after(spec["delay"])
        else:
            from_start = spec.pop("from_start", False)
            killed = self.spawn(kill=spec, kill_from_start=from_start).wait(timeout=300) == -9
        present = check_store(self.project, self.workspace, self.plan, self.journal, self.expected)
        if killed:
            self.landed.append(json.dumps(spec))
            self.present.append(present)
        return killed

    def finish(self) -> None:
        assert self.spawn().wait(timeout=300) == 0, Path(self.log).read_text()[-3000:]
        present = check_store(self.project, self.workspace, self.plan, self.journal, self.expected)
        assert present == len(self.plan)
        for item in self.plan:  # the annotators of the records are the planned ones
            versions = TileDBDatastore(self.project.store, self.workspace).list_label_versions(
                item["image"], item["tag"]
            )
            mine = [v for v in versions if (v.get("info") or {}).get("save_id") == item["save_id"]]
            assert len(mine) == 1 and mine[0]["annotator"] == item["annotator"]


def calibrate(server: ForkServer, project, plan: list[dict[str, Any]], root: Path) -> tuple[float, int]:
    """Seconds and Python calls one save takes, from uninterrupted runs on copies of the store
    (one timed, one counting calls: counting slows a run down)."""
    measured = []
    for name, counting in (("timed", False), ("counted", True)):
        copy = root / f"calibration_{name}"
        shutil.copytree(project.store, copy / "store")
        twin = type(project)(str(copy), str(copy / "store"), project.held, project.images)
        loop = KillLoop(server, twin, plan, copy)
        worker = loop.spawn(count=str(copy / "count"), counting=counting)
        assert worker.wait(timeout=300) == 0, Path(loop.log).read_text()[-3000:]
        measured.append(json.loads((copy / "count").read_text()))
    (seconds, _), (_, calls) = measured
    return seconds / len(plan), calls // len(plan)


# Kills placed inside a write, where a torn state is most likely: each dies the moment a call
# returns, before the code after it runs.
NEW_ARRAY_UNREGISTERED = {"after_return_of": "DenseArrayImpl.__setitem__"}  # first save of a label
NEW_ARRAY_REGISTERED = {"after_return_of": "write_volume"}  # visible; nothing after it ran
RECORD_WITHOUT_VOXELS = {"after_return_of": "_begin_version"}  # a new version's record, no voxels
VOXELS_WITHOUT_INDEX = {"after_return_of": "DenseArrayImpl.__setitem__"}  # in a new version of a label
CACHE_FILE_HALF_WRITTEN = {"after_return_of": "Nifti1Header.write_to"}  # a NIfTI file for Slicer
INSIDE_WRITES = [
    NEW_ARRAY_UNREGISTERED,
    NEW_ARRAY_REGISTERED,
    RECORD_WITHOUT_VOXELS,
    CACHE_FILE_HALF_WRITTEN,
    {"after_return_of": "_claim_member"},  # a new label array created, empty
    {"after_return_of": "Metadata.__setitem__", "occurrence": 3},  # among metadata writes
    {"after_return_of": "_commit_version"},  # a version whole, not yet journalled
    {"after_return_of": "DenseArrayImpl.__setitem__", "occurrence": 2},
]


def kill_specs(n: int, per_save: tuple[float, int], seed: int) -> list[dict[str, Any]]:
    """``n`` kill points: the ones inside writes first, then in turn a random delay, a random
    call, and a random call counted from the worker's start (the datastore opening, a killed
    writer's leftovers being cleared), each within the next one or two saves."""
    rng = random.Random(seed)
    seconds, calls = per_save
    specs = list(INSIDE_WRITES[:n])
    while len(specs) < n:
        kind = len(specs) % 3
        if kind == 0:
            specs.append({"delay": round(rng.uniform(0.0, 1.5 * seconds), 4)})
        elif kind == 1:
            specs.append({"at_call": rng.randint(1, int(1.5 * calls))})
        else:
            specs.append({"at_call": rng.randint(1, 3 * calls), "from_start": True})
    return specs


@pytest.mark.slow
def test_killed_label_saves_lose_nothing_and_a_rerun_saves_the_rest(fork_server, project, tmp_path) -> None:
    """Short version (CI): eight kill points over nine saves, then a rerun.

    Each kind of kill the twenty-five-point enumeration (``exhaustive``) draws from: inside the
    writes of a first save (a new label array unwritten, then registered with nothing after),
    of a new version (its record without voxels, its voxels without their foreground index),
    of the NIfTI file Slicer downloads next; a counted Python call; delays from outside. A label
    save is also killed at chosen store writes (where a version becomes visible, where its row is
    written, the last write) in CI by ``tests/radiobject_adapter/store/test_kill_points.py``.
    """
    saves = round_robin({("case_002", "final"): 4, ("case_000", "final"): 3, ("case_003", "original"): 2})
    plan = make_plan(project, tmp_path / "uploads", saves)
    seconds, calls = calibrate(fork_server, project, plan, tmp_path)
    loop = KillLoop(fork_server, project, plan, tmp_path)
    specs = [
        NEW_ARRAY_UNREGISTERED,  # save 1, the first label of case_002
        NEW_ARRAY_REGISTERED,  # save 1 again
        VOXELS_WITHOUT_INDEX,  # save 2, a new version of case_000's ground truth
        RECORD_WITHOUT_VOXELS,  # save 4 (save 3 is a new array, of a new collection)
        CACHE_FILE_HALF_WRITTEN,  # the NIfTI file of save 4
        {"at_call": calls // 2},  # within the next save or two
        {"delay": round(0.5 * seconds, 4)},  # from outside, anywhere (in C++ code too)
        {"delay": round(1.2 * seconds, 4)},
    ]
    for spec in specs:
        loop.run(spec)
    assert len(loop.landed) >= len(specs) - 1, f"kills that landed: {loop.landed}"  # a delay may miss
    assert loop.present[:5] == [0, 1, 2, 3, 4]  # each kill inside a write landed in the save meant
    print(f"{len(loop.landed)} kill points landed; planned saves in the store after each: {loop.present}")
    loop.finish()


@pytest.mark.slow
@pytest.mark.exhaustive  # make test-exhaustive; make test runs the short version above
def test_twenty_five_label_save_kill_points_never_lose_or_tear_a_label(fork_server, project, tmp_path) -> None:
    """Twenty-five kill points: every one of ``INSIDE_WRITES`` plus seeded delays and calls."""
    saves = round_robin(
        {
            ("case_002", "final"): 8,
            ("case_000", "final"): 7,
            ("case_003", "final"): 7,
            ("case_004", "original"): 7,
            ("case_005", "original"): 6,
        }
    )
    plan = make_plan(project, tmp_path / "uploads", saves, seed=1)
    per_save = calibrate(fork_server, project, plan, tmp_path)
    loop = KillLoop(fork_server, project, plan, tmp_path)
    for spec in kill_specs(40, per_save, seed=11):
        loop.run(spec)
        if len(loop.landed) >= 25:
            break
    assert len(loop.landed) >= 25, f"only {len(loop.landed)} kill points landed: {loop.landed}"
    print(f"{len(loop.landed)} kill points landed; planned saves in the store after each: {loop.present}")
    loop.finish()
