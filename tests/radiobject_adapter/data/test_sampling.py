"""Patch sampling: fresh positions, reproducible seeds, label-driven ratios, padding, affines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.utils import set_determinism

from radiobject_adapter import (
    DatasetConfig,
    LoadingMode,
    RadiObject,
    SegmentationDataset,
    TileDBStats,
    create_segmentation_dataloader,
)
from radiobject_adapter.store.foreground import FOREGROUND_KEYS
from radiobject_adapter.store.labels import ensure_foreground_index


def _starts(loader, epochs: int = 1) -> list[list[tuple[int, ...]]]:
    return [[tuple(s) for batch in loader for s in batch["patch_start"].tolist()] for _ in range(epochs)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_patch_positions_change_between_epochs_yet_repeat_from_a_seed(ct_store: str, num_workers: int) -> None:
    radi = RadiObject(ct_store)

    def loader():
        return create_segmentation_dataloader(
            radi.CT,
            radi.seg,
            patch_size=(16, 16, 16),
            patches_per_volume=2,
            batch_size=3,
            num_workers=num_workers,
            pin_memory=False,
            persistent_workers=False,
            shuffle=False,
        )

    set_determinism(seed=5)
    first_run = _starts(loader(), epochs=2)
    set_determinism(seed=5)
    second_run = _starts(loader(), epochs=2)
    set_determinism(None)
    assert first_run[0] != first_run[1]  # fresh positions each epoch
    assert first_run == second_run  # same seed, same run


def test_workers_draw_different_positions(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    loader = create_segmentation_dataloader(
        radi.CT,
        radi.seg,
        patch_size=(8, 8, 8),
        patches_per_volume=4,
        batch_size=1,
        num_workers=2,
        pin_memory=False,
        persistent_workers=False,
        shuffle=False,
    )
    starts = _starts(loader)[0]
    # With batch_size 1, items 2k and 2k+1 go to workers 0 and 1 and are the same draw of
    # each worker's sampler on the same volume: identical seeds would make every pair equal.
    pairs = [(starts[2 * k], starts[2 * k + 1]) for k in range(len(starts) // 2)]
    assert sum(a != b for a, b in pairs) >= 0.8 * len(pairs)


@pytest.mark.parametrize(("pos", "neg"), [(1, 1), (3, 1)])
def test_foreground_ratio_matches_request_on_tiny_foreground(sparse_store: str, pos: float, neg: float) -> None:
    radi = RadiObject(sparse_store)
    ds = SegmentationDataset(
        radi.img,
        radi.seg,
        DatasetConfig(loading_mode=LoadingMode.PATCH, patch_size=(16, 16, 16), seed=0),
        foreground_sampling=True,
        pos=pos,
        neg=neg,
    )
    n = 400
    hits = sum(int((ds[i % len(ds)]["label"] > 0).any()) for i in range(n))
    p = pos / (pos + neg)
    # background patches may touch foreground by chance: at most (16+3)^2*(16+3)/volume ≈ 3.5%
    sigma = np.sqrt(p * (1 - p) / n)
    assert p - 4 * sigma <= hits / n <= p + 4 * sigma + 0.035


def test_a_two_voxel_structure_is_found_every_time(sparse_store: str) -> None:
    radi = RadiObject(sparse_store)
    ds = SegmentationDataset(
        radi.img,
        radi.seg,
        DatasetConfig(loading_mode="patch", patch_size=(8, 8, 8), seed=1),
        foreground_sampling=True,
        class_ratios=[0, 0, 1],
    )
    a = radi.seg.subject_ids.index("a")
    for _ in range(50):
        assert (ds[a]["label"] == 2).sum() == 2


def _threshold_dataset(radi: RadiObject, **kwargs) -> SegmentationDataset:
    return SegmentationDataset(
        radi.img,
        radi.seg,
        DatasetConfig(loading_mode="patch", patch_size=(8, 8, 8), seed=4),
        foreground_sampling=True,
        neg=0,
        **kwargs,
    )


def test_foreground_threshold_redraws_patches_with_too_little_foreground(sparse_store: str) -> None:
    # subject a: a 27-voxel blob (>= 5% of an 8³ patch around it) and a 2-voxel speck (0.4%),
    # drawn 27:2; a threshold of 3% sends speck draws back for another draw
    radi = RadiObject(sparse_store)
    a = radi.seg.subject_ids.index("a")

    def fractions(ds: SegmentationDataset) -> list[float]:
        return [float((ds[a]["label"] > 0).float().mean()) for _ in range(120)]

    plain = fractions(_threshold_dataset(radi))
    assert min(plain) < 0.03  # without a threshold some patches hold only the speck
    kept = fractions(_threshold_dataset(radi, foreground_threshold=0.03, foreground_max_retries=10))
    assert min(kept) >= 0.03


def test_foreground_threshold_gives_up_after_max_retries_reading_one_label_patch_per_try(sparse_store: str) -> None:
    radi = RadiObject(sparse_store)
    a = radi.seg.subject_ids.index("a")
    only_speck = {"class_ratios": [0, 0, 1], "foreground_threshold": 0.03, "foreground_max_retries": 3}
    ds = _threshold_dataset(radi, **only_speck)
    ds.foreground_index(a)  # built (or read) before counting
    with TileDBStats() as stats:
        start = ds.patch_start(a)
    assert stats.queries == 3 + 1  # first draw and 3 retries, each checking its label patch
    patch = ds.load_sample(a, 0, start)["label"]
    assert int((patch == 2).sum()) == 2  # no patch reaches 3%: the last draw is kept
    with TileDBStats() as stats:
        _threshold_dataset(radi, class_ratios=[0, 0, 1]).patch_start(a)
    assert stats.queries == 0  # without a threshold, positions come from the index alone


def test_foreground_threshold_outside_zero_to_one_is_a_clear_error(sparse_store: str) -> None:
    radi = RadiObject(sparse_store)
    with pytest.raises(ValueError, match="fraction in"):
        _threshold_dataset(radi, foreground_threshold=5)


def test_foreground_sampling_reads_no_more_than_random_patches(sparse_store: str) -> None:
    radi = RadiObject(sparse_store)
    cfg = DatasetConfig(loading_mode="patch", patch_size=(16, 16, 16), seed=2)
    fg = SegmentationDataset(radi.img, radi.seg, cfg, foreground_sampling=True, pos=1, neg=0)
    uniform = SegmentationDataset(radi.img, radi.seg, cfg)

    def per_item(ds) -> tuple[list[int], int]:
        decoded, queries = [], 0
        for i in range(60):
            with TileDBStats() as stats:
                ds[i % len(ds)]
            decoded.append(stats.bytes_decoded)
            queries += stats.queries
        return decoded, queries

    fg[0], uniform[0]  # open arrays first: their metadata load is not what we compare
    fg_bytes, fg_queries = per_item(fg)
    uni_bytes, uni_queries = per_item(uniform)
    assert fg_queries == uni_queries == 60 * 2  # image + label, nothing else: the mask is never scanned
    assert max(fg_bytes) <= max(uni_bytes)
    volume_bytes = 64 * 64 * 48 * 3  # int16 image + uint8 label
    assert max(fg_bytes) < volume_bytes / 4


def test_index_is_built_once_for_stores_made_before_it(sparse_store: str, tmp_path) -> None:
    import shutil

    import tiledb

    copy = tmp_path / "old"
    shutil.copytree(sparse_store, copy)
    radi = RadiObject(str(copy))
    vol = radi.seg["a"]
    with tiledb.open(vol.uri, "w") as arr:
        for key in FOREGROUND_KEYS:
            del arr.meta[key]
    fresh = RadiObject(str(copy)).seg["a"]
    assert not set(FOREGROUND_KEYS) & set(fresh.metadata)
    index = ensure_foreground_index(fresh)
    assert index.counts[1] == 27 and index.counts[2] == 2
    with TileDBStats() as stats:
        again = ensure_foreground_index(RadiObject(str(copy)).seg["a"])
    assert stats.queries == 0 and again.counts == index.counts


def test_an_index_built_for_an_older_label_version_is_rebuilt_for_the_newest(sparse_store: str, tmp_path) -> None:
    # A process built the index of version A while another saved version B (with its own
    # index) and its write landed last: readers of B must not sample from A's foreground.
    import shutil

    import tiledb

    from radiobject_adapter.config import forget_array
    from radiobject_adapter.store.foreground import ForegroundIndex

    copy = tmp_path / "race"
    shutil.copytree(sparse_store, copy)
    uri = RadiObject(str(copy)).seg["a"].uri
    old = RadiObject(str(copy)).seg["a"].to_numpy()
    (t_old,) = {int(f.timestamp_range[1]) for f in tiledb.array_fragments(uri)}
    new = np.zeros_like(old)
    new[20:25, 20:21, 20:21] = 1  # version B: 5 voxels of class 1, no class 2
    with tiledb.open(uri, "w") as arr:
        arr[:] = new
        for key, value in ForegroundIndex.compute(new).to_metadata().items():
            arr.meta[key] = value
    with tiledb.open(uri, "w") as arr:  # the late write of A's index
        for key, value in ForegroundIndex.compute(old).to_metadata(fragment_ts=t_old).items():
            arr.meta[key] = value
    forget_array(uri)
    reader = RadiObject(str(copy)).seg["a"]
    assert ForegroundIndex.from_metadata(reader.metadata).counts[2] == 2  # the stale index is what is stored
    index = ensure_foreground_index(reader)
    assert index.counts.get(1) == 5 and 2 not in index.counts
    forget_array(uri)
    with TileDBStats() as stats:  # rebuilt once, stored for the newest fragment
        again = ensure_foreground_index(RadiObject(str(copy)).seg["a"])
    assert stats.queries == 0 and again.counts == index.counts


def test_patch_larger_than_volume_is_padded_never_truncated(sparse_store: str) -> None:
    radi = RadiObject(sparse_store)
    cfg = DatasetConfig(loading_mode="patch", patch_size=(80, 16, 64), pad_value=-7, image_dtype=None, seed=0)
    item = SegmentationDataset(radi.img, radi.seg, cfg)[0]
    assert item["image"].shape == (1, 80, 16, 64) and item["label"].shape == (1, 80, 16, 64)
    start = item["patch_start"]
    assert start[0] == -8 and start[2] == -8  # volume centred in the patch along padded axes
    assert (item["image"][0, :8] == -7).all() and (item["image"][0, -8:] == -7).all()
    assert (item["label"][0, :8] == 0).all()
    src = radi.img["a"]
    y0 = int(start[1])
    torch.testing.assert_close(item["image"][0, 8:72, :, 8:56], torch.from_numpy(src[:, y0 : y0 + 16, :]))


def test_patch_affine_is_the_volume_affine_moved_to_the_patch_origin(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode="patch", patch_size=(8, 8, 8), seed=4))
    item = ds[0]
    vol = radi.CT.iloc[0]
    start = np.asarray(item["patch_start"], float)
    expected_origin = vol.affine @ np.append(start, 1.0)
    np.testing.assert_allclose(item["image"].affine.numpy()[:3, 3], expected_origin[:3])
    np.testing.assert_allclose(item["image"].affine.numpy()[:3, :3], vol.affine[:3, :3])
    np.testing.assert_allclose(item["image"].pixdim.numpy(), vol.spacing, rtol=1e-6)


def test_patch_mode_without_patch_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs patch_size"):
        DatasetConfig(loading_mode=LoadingMode.PATCH)
