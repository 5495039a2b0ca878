"""A failed training's cause in one line (what /train/ shows last) and in train_stats."""

from __future__ import annotations

import json
import time

from monailabel_app.lib.train import failure_cause
from monailabel_app.lib.train_stats import read_train_stats, record_failure


def _chained() -> BaseException:
    try:
        try:
            raise ValueError("label s#seg/case_1 holds class [7] but the network outputs 3 classes")
        except ValueError as inner:
            raise RuntimeError("Failed to instantiate {'_target_': 'x'}") from inner
    except RuntimeError as outer:
        return outer


def test_failure_cause_is_the_innermost_error_of_the_chain_in_one_line():
    cause = failure_cause(_chained())
    assert cause.startswith("ValueError: label s#seg/case_1 holds class [7]")
    assert "(in: RuntimeError: Failed to instantiate" in cause
    assert "\n" not in cause
    assert failure_cause(KeyError("k")) == "KeyError: 'k'"


def test_failure_cause_of_a_dataloader_worker_error_keeps_the_workers_exception_line():
    err = IndexError(
        "Caught IndexError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    y()\nIndexError: index 3 is out of bounds for dimension 1 with size 3\n'
    )
    assert failure_cause(err) == (
        "IndexError: Caught IndexError in DataLoader worker process 0. "
        "IndexError: index 3 is out of bounds for dimension 1 with size 3"
    )


def test_record_failure_keeps_this_runs_progress_and_drops_an_earlier_runs(tmp_path):
    path = str(tmp_path / "train_stats.json")
    started = time.time()
    (tmp_path / "train_stats.json").write_text(
        json.dumps({"epoch": 9, "total_epochs": 9, "start_ts": int(started) - 100, "total_time": "0:01:00"})
    )
    record_failure(path, "ValueError: bad label", started, total_epochs=5)
    stats = read_train_stats(path)
    assert stats["error"] == "ValueError: bad label"
    assert (stats["epoch"], stats["total_epochs"], stats["start_ts"]) == (0, 5, int(started))  # not the old run's
    assert "total_time" in stats and "current_time" not in stats

    (tmp_path / "train_stats.json").write_text(
        json.dumps({"epoch": 2, "total_epochs": 5, "start_ts": int(started), "current_time": "0:00:10"})
    )
    record_failure(path, "RuntimeError: out of memory", started, total_epochs=5)
    stats = read_train_stats(path)
    assert (stats["epoch"], stats["error"]) == (2, "RuntimeError: out of memory")
    assert "current_time" not in stats and stats["total_time"]


def test_a_saved_label_beyond_the_declared_classes_is_named_with_what_to_do(project, tmp_path):
    """What the app's training checks before it starts (StoreBundleTrainTask._check_label_classes)."""
    import nibabel as nib
    import numpy as np
    import pytest

    from monailabel_app.lib.datastore import TileDBDatastore
    from radiobject_adapter.store.writer import StoreWriter
    from radiobundles.labels import check_label_classes

    classes = ["background", "structure_1", "structure_2"]
    StoreWriter(project.store).declare_label_classes("seg", classes)
    datastore = TileDBDatastore(project.store, str(tmp_path / "ws"))
    good = nib.load(project.held["case_002"])
    bad = np.asarray(good.dataobj).astype(np.uint8)
    bad[:2, :2, :2] = 5
    nib.save(nib.Nifti1Image(bad, good.affine), str(tmp_path / "bad.nii.gz"))
    datastore.save_label("case_002", str(tmp_path / "bad.nii.gz"), "final", {"client_id": "ann1"})
    with pytest.raises(ValueError) as caught:
        check_label_classes(datastore.datalist(), classes, project.store)
    text = str(caught.value)
    assert "seg/case_002 holds class [5] but the network outputs 3 classes" in text
    assert "correct the label" in text and "--class_names" not in text
