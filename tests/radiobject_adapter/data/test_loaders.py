"""Loader factories: fork-safe workers, distributed splits, seed-API keyword names."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from radiobject_adapter import (
    RadiObject,
    create_inference_dataloader,
    create_segmentation_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
)
from radiobject_adapter.data import make_dataloader
from radiobject_adapter.data.datasets import SegmentationDataset


@pytest.mark.slow  # forked DataLoader workers: ~18 s
def test_forked_workers_after_parent_read_never_hang(ct_store: str) -> None:
    # Run in a child process so a hang fails this test by timeout instead of freezing pytest.
    script = textwrap.dedent(
        f"""
        import multiprocessing as mp
        mp.set_start_method("fork", force=True)
        from radiobject_adapter import RadiObject, create_segmentation_dataloader
        radi = RadiObject({ct_store!r})
        radi.CT.iloc[0][0:8, 0:8, 0:8]          # the parent has used TileDB
        loader = create_segmentation_dataloader(radi.CT, radi.seg, patch_size=(16, 16, 16), batch_size=2,
            num_workers=2, patches_per_volume=4, foreground_sampling=True, pin_memory=False)
        for epoch in range(2):
            n = sum(batch["image"].shape[0] for batch in loader)
        print("items", n)
        """
    )
    # a hang guard, not a speed limit: a deadlocked worker never finishes, while the child's
    # torch/MONAI import alone took about a minute on a 2-core machine at load average 20+
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"items {4 * len(RadiObject(ct_store).CT)}" in done.stdout


def test_distributed_sampling_splits_subjects_between_ranks(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    ds = SegmentationDataset(radi.CT, radi.seg)
    seen = []
    for rank in range(2):
        loader = make_dataloader(ds, batch_size=1, shuffle=True, distributed=True, world_size=2, rank=rank, seed=3)
        loader.sampler.set_epoch(0)
        seen.append({b["subject_id"][0] for b in loader})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(radi.CT.subject_ids)


def test_factories_accept_seed_keyword_names(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    common = {"num_workers": 0, "pin_memory": False}
    train = create_training_dataloader(
        collections=[radi.CT],
        labels="diagnosis",
        batch_size=2,
        patch_size=(8, 8, 8),
        patches_per_volume=2,
        persistent_workers=True,
        transform=None,
        **common,
    )
    batch = next(iter(train))
    assert batch["image"].shape == (2, 1, 8, 8, 8) and len(batch["label"]) == 2
    val = create_validation_dataloader(radi.CT, batch_size=1, **common)
    assert next(iter(val))["image"].shape[0] == 1 and len(val) == len(radi.CT)
    infer = create_inference_dataloader(radi.CT, **common)
    assert [b["subject_id"][0] for b in infer] == radi.CT.subject_ids
    seg = create_segmentation_dataloader(
        image=radi.CT,
        mask=radi.seg,
        batch_size=4,
        patch_size=(8, 8, 8),
        foreground_sampling=True,
        foreground_threshold=0.01,
        foreground_max_retries=10,
        persistent_workers=True,
        **common,
    )
    batch = next(iter(seg))
    assert batch["image"].shape == batch["label"].shape == (4, 1, 8, 8, 8)
    assert isinstance(batch["image"], torch.Tensor)


def test_threaded_batches_equal_one_item_at_a_time_for_a_seed(ct_store: str) -> None:
    # Positions and random transforms stay in the calling thread, so the read threads change
    # the speed and nothing else: same seed, same batches, image and label still aligned.
    from monai.transforms import Compose, RandFlipd, RandSpatialCropd

    radi = RadiObject(ct_store)
    batches = {}
    for threads in (1, 3):
        transform = Compose(
            [
                RandSpatialCropd(["image", "label"], roi_size=(12, 12, 12), random_size=False),
                RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
            ]
        )
        loader = create_segmentation_dataloader(
            radi.CT,
            radi.seg,
            patch_size=(16, 16, 16),
            batch_size=4,
            num_workers=0,
            pin_memory=False,
            patches_per_volume=3,
            foreground_sampling=True,
            transform=transform,
            read_threads=threads,
        )
        loader.dataset.set_random_state(seed=11)
        torch.manual_seed(0)  # the shuffle order
        batches[threads] = [(b["image"].clone(), b["label"].clone(), b["patch_start"].clone()) for b in loader]
    assert len(batches[1]) == len(batches[3]) > 1
    for (img1, lbl1, st1), (img3, lbl3, st3) in zip(batches[1], batches[3]):
        assert torch.equal(st1, st3)
        assert torch.equal(img1, img3) and torch.equal(lbl1, lbl3)


def test_read_threads_do_not_replace_the_distributed_sampler(ct_store: str) -> None:
    # MONAI's trainers call set_epoch only on a DistributedSampler: the threads live in the dataset
    from torch.utils.data.distributed import DistributedSampler

    from radiobject_adapter import DatasetConfig

    radi = RadiObject(ct_store)
    ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig("patch", patch_size=(8, 8, 8), read_threads=2))
    loader = make_dataloader(ds, batch_size=2, shuffle=True, distributed=True, world_size=2, rank=0)
    assert isinstance(loader.sampler, DistributedSampler)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 1, 8, 8, 8) and batch["label"].shape == (2, 1, 8, 8, 8)


def test_factory_seed_fixes_patch_positions(ct_store: str) -> None:
    radi = RadiObject(ct_store)

    def starts(seed: int) -> list[list[int]]:
        loader = create_segmentation_dataloader(
            radi.CT, radi.seg, patch_size=(8, 8, 8), batch_size=6, num_workers=0, pin_memory=False,
            shuffle=False, seed=seed, patches_per_volume=2,
        )  # fmt: skip
        return [s for batch in loader for s in batch["patch_start"].tolist()]

    assert starts(5) == starts(5)
    assert starts(5) != starts(6)


def test_radiobjects_inference_loader_is_ours_with_radiobjects_keys(ct_store: str) -> None:
    from radiobject_adapter.ml import create_inference_dataloader as radiobject_inference_loader

    radi = RadiObject(ct_store)
    ours = next(iter(create_inference_dataloader(radi.CT, num_workers=0)))
    theirs = next(iter(radiobject_inference_loader(radi.CT, num_workers=0)))
    assert torch.equal(ours["image"], theirs["image"])
    assert theirs["obs_subject_id"] == ours["subject_id"] and theirs["idx"].tolist() == [0]
