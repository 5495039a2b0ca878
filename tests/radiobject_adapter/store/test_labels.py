"""Label writing in the data layer: checks against the image, versions, the foreground index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.errors import LabelError, RadiobundlesError
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobject_adapter.store.label_versions import list_versions, read_version
from radiobject_adapter.store.labels import (
    as_label_array,
    check_label_grid,
    ensure_foreground_index,
    find_label,
    write_label,
)

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
SHAPE = (12, 10, 6)


def _label(value: int, fill: tuple[slice, ...] = (slice(2, 5), slice(3, 6), slice(1, 3))) -> np.ndarray:
    data = np.zeros(SHAPE, np.uint8)
    data[fill] = value
    return data


def test_a_label_on_another_grid_is_refused() -> None:
    check_label_grid(SHAPE, AFFINE, SHAPE, AFFINE + 1e-5)  # within tolerance
    with pytest.raises(LabelError, match=r"label shape \(12, 10, 5\) != image shape \(12, 10, 6\) for 'x'"):
        check_label_grid((12, 10, 5), AFFINE, SHAPE, AFFINE, where=" for 'x'")
    with pytest.raises(LabelError, match=r"affine differs from the image affine by up to 0\.5 mm"):
        check_label_grid(SHAPE, AFFINE @ np.diag([1.0, 1.0, 1.25, 1.0]), SHAPE, AFFINE)


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([0.0, 1.5]), "non-integer"),
        (np.array([0.0, np.nan]), "NaN or infinite"),
        (np.array([0, -1], np.int16), "negative"),
        (np.array([0, 3], np.int16), r"classes \[3\] beyond the declared maximum 2"),
        (np.array(["a"]), "voxel type"),
    ],
)
def test_values_that_are_not_class_indices_are_refused(values: np.ndarray, message: str) -> None:
    with pytest.raises(LabelError, match=message):
        as_label_array(values, max_label=2)


def test_label_types_follow_ingest_and_upload_rules() -> None:
    assert as_label_array(np.array([0, 2], np.int16)).dtype == np.int16  # ingest keeps an integer type
    assert as_label_array(np.array([0.0, 300.0])).dtype == np.uint16  # a float label gets the smallest
    assert as_label_array(np.array([0, 2], np.int16), smallest=True).dtype == np.uint8  # an upload too
    assert as_label_array(np.array([0, 2], np.int64), np.uint8).dtype == np.uint8  # an existing label's type
    with pytest.raises(LabelError, match="more than the stored labels' type uint8"):
        as_label_array(np.array([0, 300]), np.uint8)


def test_label_error_is_a_value_error_and_a_radiobundles_error() -> None:
    assert issubclass(LabelError, ValueError) and issubclass(LabelError, RadiobundlesError)


def test_first_write_creates_a_listed_label_then_each_write_is_a_new_version(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = write_label(store, "seg", "case_0", _label(1), AFFINE, record={"tag": "final", "annotator": "a"})
    radi = RadiObject(store)
    found = find_label(radi, "seg", "case_0")
    assert first.created and found is not None and found.removeprefix("file://") == first.uri.removeprefix("file://")
    assert radi.seg.subject_ids == ["case_0"]

    second = write_label(
        store, "seg", "case_0", _label(2), AFFINE, uri=first.uri, record={"tag": "final", "annotator": "b"}
    )
    assert not second.created and second.uri == first.uri and second.version > first.version
    versions = list_versions(first.uri)
    assert [v.version for v in versions] == [first.version, second.version]
    assert [v.annotator for v in versions] == ["a", "b"]
    np.testing.assert_array_equal(read_version(first.uri, first.version), _label(1))  # kept by time travel
    np.testing.assert_array_equal(Volume(first.uri).to_numpy(), _label(2))
    # the index readers find describes the newest voxels, not the first version's
    index = ensure_foreground_index(Volume(first.uri), persist=False)
    assert index.foreground_classes == [2] and index.counts[2] == int((_label(2) == 2).sum())


def test_a_write_without_record_lists_as_a_store_version(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = write_label(store, "pred", "case_0", _label(1), AFFINE, version_meta={"prediction_source": "x"})
    again = write_label(
        store, "pred", "case_0", _label(1), AFFINE, uri=first.uri, version_meta={"prediction_source": "y"}
    )
    assert [v.source for v in list_versions(first.uri)] == ["store", "store"]
    assert Volume(again.uri).metadata["prediction_source"] == "y"


def test_a_label_of_another_shape_than_the_stored_one_is_refused_and_nothing_written(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = write_label(store, "seg", "case_0", _label(1), AFFINE)
    with pytest.raises(LabelError, match=r"already holds a label of shape \(12, 10, 6\)"):
        write_label(store, "seg", "case_0", np.zeros((4, 4, 4), np.uint8), AFFINE, uri=first.uri)
    assert len(list_versions(first.uri)) == 1


def test_an_index_computed_for_an_older_version_is_rebuilt(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    first = write_label(store, "seg", "case_0", _label(1), AFFINE)
    stale = ForegroundIndex.compute(_label(1)).to_metadata(fragment_ts=first.version)
    write_label(store, "seg", "case_0", _label(3), AFFINE, uri=first.uri)
    volume = Volume(first.uri)
    volume.remember_metadata(stale)  # as if another process wrote it late for the old fragment
    assert ensure_foreground_index(volume, persist=False).foreground_classes == [3]
