"""``patch_training_dataset``: label-driven patches from a store (patch reads) or NIfTI, one subject per item."""

from __future__ import annotations

import pytest
import torch
from monai.data import CacheDataset, DataLoader
from monai.data.samplers import DistributedSampler

from bundles.ct_segmentation_3d.scripts.datasets import PatchesPerSubject, datalist_source, patch_training_dataset
from radiobundles.datalists import make_datalist

PATCH = (16, 16, 16)


@pytest.fixture(scope="module")
def store_train(ct_store):
    return make_datalist(ct_store, split="train", val_fraction=0.34, seed=0)


@pytest.fixture(scope="module")
def nifti_train(synthetic_ct):
    return make_datalist(synthetic_ct.root, split="train", val_fraction=0.34, seed=0)


def test_store_datalist_reads_patches_through_the_adapter(store_train):
    ds = patch_training_dataset(store_train, PATCH, patches_per_volume=3)
    assert isinstance(ds, PatchesPerSubject)
    assert len(ds) == len(store_train)
    patches = ds[0]
    assert len(patches) == 3
    assert {tuple(p["image"].shape) for p in patches} == {(1, *PATCH)}
    assert patches[0]["image"].dtype == torch.float32
    assert patches[0]["label"].dtype == torch.uint8
    assert patches[0]["subject_id"] == store_train[0]["subject_id"]


def test_nifti_datalist_gives_the_same_item_layout(nifti_train, store_train):
    nifti, store = patch_training_dataset(nifti_train, PATCH, 3), patch_training_dataset(store_train, PATCH, 3)
    assert isinstance(nifti, CacheDataset)
    a, b = nifti[0], store[0]
    assert len(a) == len(b) == 3
    for key in ("image", "label"):
        assert a[0][key].shape == b[0][key].shape
        assert a[0][key].dtype == b[0][key].dtype


@pytest.mark.parametrize("source", ["store", "nifti"])
def test_positive_only_sampling_puts_foreground_in_every_patch(source, store_train, nifti_train):
    data = store_train if source == "store" else nifti_train
    ds = patch_training_dataset(data, (8, 8, 8), patches_per_volume=4, pos=1.0, neg=0.0)
    for i in range(len(ds)):
        assert all(int(p["label"].max()) > 0 for p in ds[i])


@pytest.mark.parametrize("source", ["store", "nifti"])
def test_volume_smaller_than_patch_is_padded_with_pad_value(source, store_train, nifti_train):
    data = store_train if source == "store" else nifti_train
    ds = patch_training_dataset(data, (64, 64, 64), patches_per_volume=1, pad_value=-1000.0)
    patch = ds[0][0]
    assert tuple(patch["image"].shape) == (1, 64, 64, 64)
    assert float(patch["image"][0, 0, 0, 0]) == -1000.0
    assert int(patch["label"][0, 0, 0, 0]) == 0


def test_patches_are_drawn_afresh_for_each_access(store_train):
    ds = patch_training_dataset(store_train, PATCH, patches_per_volume=2)
    starts = {tuple(int(v) for v in p["patch_start"]) for _ in range(4) for p in ds[0]}
    assert len(starts) > 1


def test_distributed_sampler_gives_each_rank_its_own_subjects(store_train):
    ds = patch_training_dataset(store_train, PATCH, patches_per_volume=2)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=False, even_divisible=False)
        loader = DataLoader(ds, batch_size=1, sampler=sampler)
        seen.append({sid for batch in loader for sid in batch["subject_id"]})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {it["subject_id"] for it in store_train}


def test_a_collated_batch_holds_batch_size_times_patches(store_train):
    loader = DataLoader(patch_training_dataset(store_train, PATCH, patches_per_volume=3), batch_size=2)
    batch = next(iter(loader))
    assert tuple(batch["image"].shape) == (6, 1, *PATCH)


def test_source_is_read_from_the_items(store_train, nifti_train):
    assert datalist_source(store_train) == "store"
    assert datalist_source(nifti_train) == "nifti"
    with pytest.raises(ValueError, match="mixes store addresses and files"):
        datalist_source([store_train[0], nifti_train[0]])
    with pytest.raises(ValueError, match="patch_size must have three entries"):
        patch_training_dataset(store_train, (16, 16))
