"""Opening stores: collections, volumes by id and position, subject table, datalists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiledb

from radiobject_adapter import FormatVersionError, RadiObject, StoreNotFoundError, parse_address, split_subjects
from radiobject_adapter.store.layout import FORMAT_VERSION, FORMAT_VERSION_KEY


def test_collections_by_attribute_and_name_and_volumes_by_id_and_position(ct_store: str, synthetic_ct) -> None:
    radi = RadiObject(ct_store)
    assert radi.CT is radi.collection("CT") is radi["CT"]
    sid = synthetic_ct.subject_ids[2]
    by_subject = radi.CT[sid]
    assert radi.CT.loc[f"{sid}_CT"].uri == by_subject.uri
    assert radi.CT.iloc[2].uri == by_subject.uri == radi.CT[2].uri
    assert by_subject.subject_id == sid
    with pytest.raises(KeyError, match="no volume 'nobody'"):
        radi.CT["nobody"]
    with pytest.raises(AttributeError, match="no collection 'PET'"):
        _ = radi.PET


def test_volumes_of_different_shapes_live_in_one_collection(ct_store: str) -> None:
    shapes = {v.shape for v in RadiObject(ct_store).CT}
    assert len(shapes) > 1


def test_subject_table_is_a_dataframe_and_filters_subjects(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    table = radi.obs_meta
    assert {"obs_subject_id", "diagnosis", "age"} <= set(table.columns)
    tumor = radi.query("diagnosis == 'tumor'")
    assert tumor == sorted(table.loc[table.diagnosis == "tumor", "obs_subject_id"])
    view = radi.filter("diagnosis == 'tumor' and age > 0")
    assert view.CT.subject_ids == tumor and len(view) == len(tumor)
    with pytest.raises(ValueError, match="bad subject query"):
        radi.query("no_such_column > 1")


def test_datalist_split_is_seeded_disjoint_and_complete(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    train = radi.datalist(image="CT", label="seg", split="train", val_fraction=0.34, seed=3, columns=["age"])
    val = radi.datalist(image="CT", label="seg", split="validation", val_fraction=0.34, seed=3)
    assert train == radi.datalist(image="CT", label="seg", split="train", val_fraction=0.34, seed=3, columns=["age"])
    train_ids, val_ids = {d["subject_id"] for d in train}, {d["subject_id"] for d in val}
    assert not train_ids & val_ids and train_ids | val_ids == set(radi.subject_ids) and len(val_ids) == 2
    first = train[0]
    assert parse_address(first["image"]).collection == "CT" and parse_address(first["label"]).key == first["subject_id"]
    assert isinstance(first["age"], int)
    other_seed = {d["subject_id"] for d in radi.datalist(image="CT", split="validation", val_fraction=0.34, seed=4)}
    assert split_subjects(radi.subject_ids, 0.34, 4)[1] == sorted(other_seed)


def test_path_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="is not a radiobundles store"):
        RadiObject(str(tmp_path))


def test_store_from_a_newer_format_version_is_refused(ct_store: str, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ct_store, copy)
    with tiledb.Group(str(copy), "w") as grp:
        grp.meta[FORMAT_VERSION_KEY] = FORMAT_VERSION + 1
    with pytest.raises(FormatVersionError, match="upgrade radiobundles"):
        RadiObject(str(copy))


def test_local_store_uri_is_made_absolute_for_datalists(ct_store: str, monkeypatch) -> None:
    parent, name = Path(ct_store).parent, Path(ct_store).name
    monkeypatch.chdir(parent)
    radi = RadiObject(name)
    assert radi.uri == ct_store
    assert radi.datalist(image="CT")[0]["image"].startswith(ct_store + "::")
    assert np.all(radi.CT.iloc[0].shape)


def test_is_store_tells_stores_from_folders_groups_and_missing_paths(ct_store: str, synthetic_ct, tmp_path) -> None:
    import tiledb

    from radiobject_adapter import is_store

    bare_group = str(tmp_path / "group")
    tiledb.group_create(bare_group)
    assert is_store(ct_store) and is_store(ct_store + "/")
    assert not is_store(synthetic_ct.images_dir)  # a folder of NIfTI files
    assert not is_store(bare_group)  # a TileDB group, but no collections
    assert not is_store(str(tmp_path / "missing"))
