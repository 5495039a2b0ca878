"""Loader contracts: shapes, pairing, seeded split, external validation, subset, cache, ranks, report."""

from __future__ import annotations

import logging

import pytest
import torch

from bundles.paired_latent_diffusion_2d.scripts.data import (
    create_condition_dataloader,
    create_ldm_dataloaders,
    create_vae_dataloaders,
    select_names,
)
from bundles.paired_latent_diffusion_2d.scripts.pairing import UnpairedImagesError
from bundles.paired_latent_diffusion_2d.scripts.synthetic import make_paired_tifs


def _names(loader) -> list[str]:
    return [item["name"] for item in loader.dataset.data]


def test_vae_loader_yields_float32_single_images(paired_tifs):
    train, val = create_vae_dataloaders(paired_tifs.root, batch_size=4, patch_size=16, report=False)
    batch = next(iter(train))
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 1, 16, 16) and batch.dtype == torch.float32
    assert len(train.dataset) == 9 and len(val.dataset) == 1


def test_vae_both_sources_keep_the_two_images_of_a_name_on_one_side(paired_tifs):
    train, val = create_vae_dataloaders(paired_tifs.root, 4, 16, data_source="both", train_split=0.7, report=False)
    assert len(train.dataset) == 14 and len(val.dataset) == 6
    assert not set(_names(train)) & set(_names(val))
    assert {item["source"] for item in val.dataset.data} == {"dente", "edente"}


def test_ldm_loader_yields_aligned_target_condition_pairs(paired_tifs):
    train, _ = create_ldm_dataloaders(paired_tifs.root, batch_size=3, patch_size=(16, 12), report=False)
    target, condition = next(iter(train))
    assert target.shape == condition.shape == (3, 1, 16, 12)
    assert not torch.equal(target, condition)  # teeth only in the condition
    for item in train.dataset.data:
        assert item["target"].endswith(f"edente/{item['name']}.tif")
        assert item["condition"].endswith(f"dente/{item['name']}.tif")


def test_unpaired_names_stop_the_ldm_loader_unless_asked_to_keep_the_intersection(tmp_path):
    ds = make_paired_tifs(str(tmp_path), n_pairs=4, shape=(8, 8), only_target=["img_extra"])
    with pytest.raises(UnpairedImagesError, match="img_extra"):
        create_ldm_dataloaders(ds.root, 2, 8, report=False)
    train, val = create_ldm_dataloaders(ds.root, 2, 8, keep_intersection=True, train_split=0.5, report=False)
    assert sorted(_names(train) + _names(val)) == ds.names


def test_split_is_reproducible_and_depends_on_the_seed(paired_tifs):
    a = create_ldm_dataloaders(paired_tifs.root, 2, 8, train_split=0.6, seed=5, report=False)
    b = create_ldm_dataloaders(paired_tifs.root, 2, 8, train_split=0.6, seed=5, report=False)
    c = create_ldm_dataloaders(paired_tifs.root, 2, 8, train_split=0.6, seed=6, report=False)
    assert _names(a[1]) == _names(b[1]) and len(_names(a[1])) == 4
    assert _names(a[1]) != _names(c[1])
    assert select_names(list(reversed(paired_tifs.names)), 0.6, 5) == select_names(paired_tifs.names, 0.6, 5)


def test_training_order_is_shuffled_reproducibly(paired_tifs):
    def first_batch(seed):
        train, _ = create_ldm_dataloaders(paired_tifs.root, 9, 8, seed=seed, report=False)
        return next(iter(train))[0]

    torch.testing.assert_close(first_batch(1), first_batch(1))


def test_external_validation_folder_is_used_whole(paired_tifs, tmp_path):
    val_ds = make_paired_tifs(str(tmp_path / "val"), n_pairs=3, shape=(24, 20), seed=50, prefix="val_")
    train, val = create_ldm_dataloaders(paired_tifs.root, 2, 8, val_dir=val_ds.root, report=False)
    assert len(train.dataset) == 10 and _names(val) == val_ds.names


def test_subset_size_draws_that_many_names_before_splitting(paired_tifs):
    train, val = create_ldm_dataloaders(paired_tifs.root, 2, 8, subset_size=5, train_split=0.8, report=False)
    assert len(train.dataset) + len(val.dataset) == 5
    again, _ = create_ldm_dataloaders(paired_tifs.root, 2, 8, subset_size=5, train_split=0.8, report=False)
    assert _names(train) == _names(again)


def test_no_validation_data_is_a_clear_error(paired_tifs):
    with pytest.raises(ValueError, match="lower train_split or pass val_dir"):
        create_vae_dataloaders(paired_tifs.root, 2, 8, train_split=1.0, report=False)


def test_cache_rate_caches_preprocessed_items(paired_tifs):
    from monai.data import CacheDataset

    train, _ = create_vae_dataloaders(paired_tifs.root, 2, 8, cache_rate=0.5, report=False)
    assert isinstance(train.dataset, CacheDataset) and train.dataset.cache_num == 4
    assert next(iter(train)).shape == (2, 1, 8, 8)


def test_distributed_sampler_splits_training_data_between_ranks(paired_tifs):
    shards = []
    for rank in (0, 1):
        train, val = create_ldm_dataloaders(
            paired_tifs.root, 2, 8, train_split=0.8, distributed=True, world_size=2, rank=rank, report=False
        )
        assert isinstance(train.sampler, torch.utils.data.DistributedSampler)
        shards.append((set(train.sampler), set(val.sampler)))
    (train0, val0), (train1, val1) = shards
    assert not train0 & train1 and train0 | train1 == set(range(8))
    assert not val0 & val1 and val0 | val1 == set(range(2))


def test_statistics_report_is_logged_on_rank_zero_only(paired_tifs, caplog):
    with caplog.at_level(logging.INFO, logger=create_ldm_dataloaders.__module__):
        create_ldm_dataloaders(paired_tifs.root, 2, 16, distributed=True, world_size=2, rank=1)
    assert "dataset statistics" not in caplog.text
    with caplog.at_level(logging.INFO, logger=create_ldm_dataloaders.__module__):
        create_ldm_dataloaders(paired_tifs.root, 2, 16, distributed=True, world_size=2, rank=0)
    text = caplog.text
    assert "train 9 / val 1 (90% / 10%)" in text
    assert "shape (1, 16, 16), float32" in text
    assert "range [" in text and "mean" in text and "std" in text
    assert "10 pairs" in text


def test_store_gives_the_same_pairs_and_tensors_as_folders(paired_tifs, paired_store):
    folder_train, _ = create_ldm_dataloaders(paired_tifs.root, 10, 8, train_split=0.9, seed=3, report=False)
    store_train, _ = create_ldm_dataloaders(paired_store, 10, 8, train_split=0.9, seed=3, report=False)
    assert _names(folder_train) == _names(store_train)
    for a, b in zip(next(iter(folder_train)), next(iter(store_train))):
        torch.testing.assert_close(a, b)


def test_inference_loader_keeps_names_and_original_size(paired_tifs):
    loader = create_condition_dataloader(paired_tifs.root, patch_size=16, batch_size=4)
    batch = next(iter(loader))
    assert batch["condition"].shape == (4, 1, 16, 16)
    assert batch["name"] == paired_tifs.names[:4]
    assert list(batch["condition"].meta["spatial_shape"][0][:2]) == [24, 20]
