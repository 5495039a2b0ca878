"""Label classes declared at ingest, kept by the store and checked on later ingests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from radiobject_adapter import IngestError, RadiObject, ingest_niftis
from radiobject_adapter.store.label_classes import (
    classes_in_volumes,
    declared_label_classes,
    label_classes,
    parse_label_classes,
)
from radiobject_adapter.synthetic import make_ct_dataset

SHAPES = ((16, 20), (16, 20), (8, 10))


@pytest.fixture(scope="module")
def three_class_data(tmp_path_factory):
    """Labels holding classes 0..3 (three structures)."""
    return make_ct_dataset(str(tmp_path_factory.mktemp("three")), n_subjects=3, shape_range=SHAPES, n_classes=3, seed=4)


def _classes_in_files(ds) -> dict[str, set[int]]:
    return {s: {int(v) for v in np.unique(nib.load(p).get_fdata())} for s, p in zip(ds.subject_ids, ds.labels)}


def _ingest(store: str, ds, **kwargs):
    return ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False, **kwargs)


def test_declared_classes_are_recorded_and_read_back(three_class_data, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    report = _ingest(store, three_class_data, label_classes="background, liver,tumour,cyst")
    assert report.ok, report.summary()
    seg = RadiObject(store).seg
    assert declared_label_classes(seg) == ["background", "liver", "tumour", "cyst"]
    assert label_classes(seg) == ["background", "liver", "tumour", "cyst"]
    assert classes_in_volumes(seg) == _classes_in_files(three_class_data)


def test_labels_with_a_class_beyond_the_declared_ones_are_rejected(three_class_data, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    report = _ingest(store, three_class_data, label_classes=["background", "liver", "tumour"])
    holding_3 = sorted(s for s, present in _classes_in_files(three_class_data).items() if 3 in present)
    assert holding_3 and sorted(f.subject_id for f in report.failures) == holding_3
    assert all("classes [3] beyond the declared maximum 2" in f.reason for f in report.failures)
    assert sorted(RadiObject(store).seg.subject_ids) == sorted(set(three_class_data.subject_ids) - set(holding_3))


def test_a_later_ingest_keeps_the_declared_classes_and_refuses_others(three_class_data, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    _ingest(store, three_class_data, label_classes="background,a,b,c")
    assert _ingest(store, three_class_data).ok  # no names given: the declared ones stand
    with pytest.raises(IngestError, match=r"declares label classes \['background', 'a', 'b', 'c'\]"):
        _ingest(store, three_class_data, label_classes="background,x,b,c")
    assert declared_label_classes(RadiObject(store).seg) == ["background", "a", "b", "c"]


def test_undeclared_classes_come_from_what_the_labels_hold(three_class_data, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    _ingest(store, three_class_data)
    seg = RadiObject(store).seg
    assert declared_label_classes(seg) is None
    assert label_classes(seg) == ["background", "class_1", "class_2", "class_3"]
    assert label_classes(seg, default=["bg", "liver"]) == ["bg", "liver", "class_2", "class_3"]


@pytest.mark.parametrize(
    ("names", "message"),
    [("background", "one non-blank name per class"), ("background,,b", "non-blank"), ("bg,a,a", "more than once")],
)
def test_bad_class_lists_are_refused(names: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_label_classes(names)


def test_label_classes_without_a_label_collection_is_an_input_error(three_class_data, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"none of .* is one"):
        ingest_niftis(str(tmp_path / "s"), {"CT": three_class_data.images_dir}, label_classes="bg,a", progress=False)
