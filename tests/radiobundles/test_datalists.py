"""``make_datalist``: one subject-level split for a store and for the NIfTI folder it came from."""

from __future__ import annotations

import os
import shutil

import pytest

from radiobundles.datalists import detect_source, make_datalist


def subjects(items: list[dict]) -> list[str]:
    return [it["subject_id"] for it in items]


def test_store_and_nifti_folder_give_the_same_split(ct_store, synthetic_ct):
    for split in ("train", "validation"):
        from_store = make_datalist(ct_store, split=split, val_fraction=0.34, seed=3)
        from_folder = make_datalist(synthetic_ct.root, split=split, val_fraction=0.34, seed=3)
        assert subjects(from_store) == subjects(from_folder)
    train = set(subjects(make_datalist(ct_store, split="train", val_fraction=0.34, seed=3)))
    val = set(subjects(make_datalist(ct_store, split="validation", val_fraction=0.34, seed=3)))
    assert not train & val
    assert train | val == set(synthetic_ct.subject_ids)


def test_store_items_are_volume_addresses_and_folder_items_are_files(ct_store, synthetic_ct):
    store_item = make_datalist(ct_store, split="all")[0]
    assert store_item["image"] == f"{os.path.abspath(ct_store)}::CT/{store_item['subject_id']}"
    assert store_item["label"] == f"{os.path.abspath(ct_store)}::seg/{store_item['subject_id']}"
    file_item = make_datalist(synthetic_ct.root, split="all")[0]
    assert file_item["image"].endswith(f"imagesTr/{file_item['subject_id']}_0000.nii.gz")
    assert file_item["label"].endswith(f"labelsTr/{file_item['subject_id']}.nii.gz")


def test_unlabelled_split_lists_images_without_labels(synthetic_ct, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_ct.root, root)
    held_out = synthetic_ct.subject_ids[-1]
    os.remove(root / "labelsTr" / f"{held_out}.nii.gz")
    unlabelled = make_datalist(str(root), split="unlabelled")
    assert subjects(unlabelled) == [held_out]
    assert "label" not in unlabelled[0]
    assert held_out not in subjects(make_datalist(str(root), split="train", val_fraction=0.2))
    assert len(make_datalist(str(root), split="all")) == len(synthetic_ct.subject_ids)


def test_a_plain_folder_of_nifti_files_is_a_source(synthetic_ct):
    items = make_datalist(synthetic_ct.images_dir, split="all")
    assert subjects(items) == sorted(synthetic_ct.subject_ids)
    assert all("label" not in it for it in items)


def test_empty_split_says_why(ct_store):
    with pytest.raises(ValueError, match=r"'unlabelled' .* is empty"):
        make_datalist(ct_store, split="unlabelled")


def test_unknown_split_is_rejected(ct_store):
    with pytest.raises(ValueError, match="split must be one of"):
        make_datalist(ct_store, split="test")


def test_detect_source_rejects_a_folder_without_images(tmp_path, ct_store, synthetic_ct):
    assert detect_source(ct_store) == "store"
    assert detect_source(synthetic_ct.root) == "nifti"
    with pytest.raises(ValueError, match="neither a TileDB store nor a folder"):
        detect_source(str(tmp_path))


def test_dataset_dir_may_name_the_image_collection_in_new_and_old_form(ct_store):
    expected = make_datalist(ct_store, split="train", val_fraction=0.34, image_collection="CT")
    for dataset_dir in (f"{ct_store}::CT", f"{ct_store}#CT"):
        assert make_datalist(dataset_dir, split="train", val_fraction=0.34, image_collection="other") == expected
    with pytest.raises(KeyError, match="nope"):
        make_datalist(f"{ct_store}::nope")


def test_a_folder_with_a_hash_in_its_name_is_still_a_folder(synthetic_ct, tmp_path):
    root = tmp_path / "run#3"
    shutil.copytree(synthetic_ct.root, root)
    assert subjects(make_datalist(str(root), split="all")) == subjects(make_datalist(synthetic_ct.root, split="all"))
