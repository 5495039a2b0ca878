"""radiobject's call shapes on ours: contexts, settings, statistics, building, selection, keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiledb

from radiobject_adapter import RadiObject, S3Config, TileDBStats, Volume, VolumeCollection, get_tiledb_ctx
from radiobject_adapter.config import ReadConfig, configure, ctx_for_threads, current_settings, tiledb_config
from radiobject_adapter.ctx import SliceOrientation, TileConfig
from radiobject_adapter.parallel import ctx_for_process, map_on_threads

SHAPE = (20, 16, 8)


@pytest.fixture
def built(tmp_path) -> RadiObject:
    """A store built from arrays only: 3 subjects, CT and seg, an ``age`` column."""
    vols, segs = [], []
    for i in range(3):
        ct = Volume.from_numpy(str(tmp_path / f"ct{i}"), np.full(SHAPE, i, np.int16), affine=np.diag([2, 2, 3, 1.0]))
        ct.set_obs_id(f"s{i}_CT")
        seg = Volume.from_numpy(
            str(tmp_path / f"seg{i}"), (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3).astype(np.uint8)
        )
        seg.set_obs_id(f"s{i}_seg")
        vols.append((f"s{i}_CT", ct))
        segs.append((f"s{i}_seg", seg))
    obs = pd.DataFrame({"obs_id": [o for o, _ in vols + segs], "obs_subject_id": [f"s{i}" for i in range(3)] * 2})
    ct_vc = VolumeCollection.from_volumes(str(tmp_path / "ct"), vols, obs_data=obs, name="CT")
    seg_vc = VolumeCollection.from_volumes(str(tmp_path / "seg"), segs, obs_data=obs, name="seg")
    table = pd.DataFrame({"obs_subject_id": ["s0", "s1", "s2"], "age": [30, 50, 70]})
    return RadiObject.from_collections(str(tmp_path / "store"), {"CT": ct_vc, "seg": seg_vc}, obs_meta=table)


def test_store_built_from_arrays_reads_back_voxels_affines_and_subjects(built: RadiObject) -> None:
    assert built.collection_names == ("CT", "seg")
    assert built.CT.subject_ids == ["s0", "s1", "s2"]
    assert int(built.CT["s2"].to_numpy().max()) == 2
    np.testing.assert_allclose(built.CT["s1"].spacing, (2, 2, 3))
    assert built.CT.shape == SHAPE and built.CT.is_uniform
    assert list(built.obs_meta["age"]) == [30, 50, 70]


def test_volume_builders_refuse_an_existing_location(tmp_path) -> None:
    Volume.create(str(tmp_path / "v"), SHAPE, np.float32)
    with pytest.raises(FileExistsError, match="exists"):
        Volume.from_numpy(str(tmp_path / "v"), np.zeros(SHAPE))


def test_builders_tile_axially_unless_a_tile_config_says_otherwise(tmp_path) -> None:
    assert Volume.from_numpy(str(tmp_path / "a"), np.zeros(SHAPE)).tile_orientation == SliceOrientation.AXIAL
    before = current_settings().write
    try:
        configure(tile=TileConfig(orientation=SliceOrientation.SAGITTAL))
        vol = Volume.from_numpy(str(tmp_path / "b"), np.zeros(SHAPE))
        assert vol.tile_orientation == SliceOrientation.SAGITTAL and vol.tile_shape == (1, 16, 8)
    finally:
        configure(write=before)


def test_positional_context_is_a_context_never_a_name(built: RadiObject) -> None:
    ctx = tiledb.Ctx()
    col = VolumeCollection(built.CT.uri, ctx)
    assert col.ctx is ctx and col.name == "CT" and col.iloc[0].ctx is ctx
    assert RadiObject(built.uri, ctx).CT.ctx is ctx
    with pytest.raises(TypeError, match="name="):
        VolumeCollection(built.CT.uri, "CT")
    with pytest.raises(TypeError, match="timestamp="):
        Volume(built.CT.uri_of("s0"), 5)


def test_context_helpers_take_radiobject_arguments() -> None:
    shared = get_tiledb_ctx()
    assert ctx_for_threads(shared) is shared and ctx_for_threads() is shared
    fresh = ctx_for_process(shared)
    assert fresh is not shared and fresh.config()["sm.memory_budget"] == shared.config()["sm.memory_budget"]
    assert map_on_threads(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]


def test_readconfig_and_s3config_take_radiobject_fields() -> None:
    assert ReadConfig(max_workers=8, tile_cache_size_mb=512).max_workers == 8
    with pytest.raises(ValueError, match="max_workers"):
        ReadConfig(max_workers=0)
    cfg = S3Config(endpoint="http://127.0.0.1:9000", use_virtual_addressing=False, multipart_part_size_mb=100)
    assert (cfg.endpoint_override, cfg.scheme, cfg.multipart_part_size) == ("127.0.0.1:9000", "http", 100 << 20)
    assert S3Config(include_credentials=False).endpoint_override is None
    with pytest.raises(ValueError, match="give one of them"):
        S3Config(endpoint="http://a:1", endpoint_override="b:2")
    settings = current_settings()
    try:
        configure(s3=cfg)
        assert tiledb_config()["vfs.s3.endpoint_override"] == "127.0.0.1:9000"
        assert tiledb_config()["vfs.s3.multipart_part_size"] == str(100 << 20)
    finally:
        configure(s3=settings.s3)


def test_stats_block_without_queries_exits_cleanly_and_keeps_the_blocks_exception() -> None:
    with TileDBStats() as empty:
        pass
    assert empty.raw_json() == "{}" and empty.cache_stats().hit_rate == 0.0 and empty.queries == 0
    with pytest.raises(KeyError, match="mine"), TileDBStats():
        raise KeyError("mine")


def test_stats_accessors_report_the_reads(built: RadiObject) -> None:
    with TileDBStats() as stats:
        built.CT.iloc[0].to_numpy()
    assert stats.queries == 1
    assert stats.s3_stats().read_ops > 0 and stats.s3_stats().parallelization_rate == 0.0
    assert stats.cache_stats().tile_bytes_read > 0
    assert stats.all_counters() == dict(stats.counters) and "read_ops_num" in stats.counters()
    assert '"counters"' in stats.raw_json()


def test_collection_selection_by_slice_list_mask_and_fractional_position(built: RadiObject) -> None:
    ct = built.CT
    assert ct[1:].subject_ids == ["s1", "s2"] and ct[1:].is_view
    assert ct.iloc[[0, 2]].obs_ids == ["s0_CT", "s2_CT"]
    assert ct.iloc[np.array([True, False, True])].subject_ids == ["s0", "s2"]
    assert ct.loc[["s1_CT"]].subject_ids == ["s1"]
    assert ct.head(2).obs_subject_ids == ["s0", "s1"]
    with pytest.raises(TypeError, match="float"):
        ct.iloc[1.5]
    with pytest.raises(ValueError, match="mask"):
        ct.iloc[np.array([True])]


def test_store_selection_by_subject(built: RadiObject) -> None:
    assert built.iloc[0].obs_subject_ids == ["s0"]
    assert built.loc[["s1", "s2"]].CT.subject_ids == ["s1", "s2"]
    assert built["s2"].seg.subject_ids == ["s2"] and built["CT"].name == "CT"
    assert built.head(2).obs_subject_ids == ["s0", "s1"] and built.tail(1).obs_subject_ids == ["s2"]
    assert built.select_collections(["seg"]).collection_names == ("seg",)
    assert built.get_volume("s1_seg").obs_id == "s1_seg"
    with pytest.raises(TypeError):
        built.iloc[0.5]
    with pytest.raises(KeyError, match="no subject"):
        built.loc["nobody"]


def test_tables_answer_read_as_in_radiobject_and_stay_pandas(built: RadiObject) -> None:
    old = built.obs_meta.read(columns=["age"], value_filter="age > 40")
    assert list(old.columns) == ["obs_subject_id", "obs_id", "age"] and list(old["age"]) == [50, 70]
    assert isinstance(built.obs_meta[built.obs_meta.age > 40], pd.DataFrame)
    assert set(built.CT.obs.read()["obs_id"]) == {"s0_CT", "s1_CT", "s2_CT"}
    with pytest.raises(ValueError, match="bad value_filter"):
        built.obs_meta.read(value_filter="nonsense >")


def test_from_niftis_takes_radiobject_legacy_forms(tmp_path, synthetic_ct) -> None:
    pairs = [(p, f"subj{i}") for i, p in enumerate(synthetic_ct.images[:2])]
    radi = RadiObject.from_niftis(str(tmp_path / "a"), niftis=pairs, collection_name="CT")
    assert radi.CT.subject_ids == ["subj0", "subj1"]
    radi = RadiObject.from_niftis(str(tmp_path / "b"), image_dir=synthetic_ct.images_dir, collection_name="CT")
    assert len(radi.CT) == len(synthetic_ct.images)
    radi = RadiObject.from_niftis(str(tmp_path / "c"), images={"CT": pairs})
    assert radi.CT.subject_ids == ["subj0", "subj1"]
    with pytest.raises(ValueError, match="collection_name"):
        RadiObject.from_niftis(str(tmp_path / "d"), niftis=pairs)  # file names say nothing of a modality
    with pytest.raises(ValueError, match="obs_meta required"):  # radiobject's rule for new subjects
        radi.append(niftis=[(synthetic_ct.images[2], "subj2")], collection_name="CT")
    radi.append(
        niftis=[(synthetic_ct.images[2], "subj2")],
        collection_name="CT",
        obs_meta=pd.DataFrame({"obs_subject_id": ["subj2"]}),
    )
    assert radi.CT.subject_ids == ["subj0", "subj1", "subj2"]


def test_radiobject_named_loaders_use_radiobject_keys_and_drop_the_last_batch(built: RadiObject) -> None:
    from radiobject_adapter.ml import create_segmentation_dataloader, create_training_dataloader

    seg = create_segmentation_dataloader(built.CT, built.seg, batch_size=2, patch_size=(8, 8, 8), num_workers=0)
    batches = list(seg)
    assert len(batches) == 1  # 3 items, batches of 2, the incomplete one dropped
    assert {"image", "mask", "idx", "patch_idx", "patch_start", "obs_id", "obs_subject_id"} <= set(batches[0])
    assert "label" not in batches[0]
    train = create_training_dataloader(built.CT, labels="age", batch_size=3, num_workers=0)
    batch = next(iter(train))
    assert sorted(batch["label"].tolist()) == [30, 50, 70] and "obs_subject_id" in batch
    assert train.dataset.n_channels == 1 and train.dataset.volume_shape == SHAPE
    assert train.dataset.collection_names == ["CT"]


def test_distributed_loader_splits_subjects_between_ranks(built: RadiObject) -> None:
    from radiobject_adapter.ml import create_distributed_dataloader, set_epoch

    seen = []
    for rank in (0, 1):
        loader = create_distributed_dataloader(built.CT, rank=rank, world_size=2, batch_size=1, num_workers=0)
        set_epoch(loader, 1)
        seen += [int(i) for b in loader for i in b["idx"]]
    assert sorted(set(seen)) == [0, 1, 2] and len(seen) == 4  # 3 items padded to 2 per rank
    with pytest.raises(ValueError, match="rank"):
        create_distributed_dataloader(built.CT, rank=2, world_size=2)


def test_collection_append_checks_every_file_before_writing(built: RadiObject, synthetic_ct, tmp_path) -> None:
    import nibabel as nib

    good = tmp_path / "new.nii.gz"
    nib.save(nib.Nifti1Image(np.full(SHAPE, 7, np.int16), np.eye(4)), good)
    bad = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), bad)
    with pytest.raises(ValueError, match="Dimension mismatch"):
        built.CT.append(niftis=[(str(good), "s3"), (str(bad), "s4")])
    assert len(built.CT.refresh()) == 3  # nothing of the rejected call was written
    with pytest.raises(ValueError, match="already exist"):
        built.CT.append(niftis=[(str(good), "s0")])
    with pytest.raises(FileNotFoundError):
        built.CT.append(niftis=[(str(tmp_path / "missing.nii.gz"), "s5")])
    built.CT.append(niftis=[(str(good), "s3")])
    assert RadiObject(built.uri).CT.subject_ids == ["s0", "s1", "s2", "s3"]
    assert int(RadiObject(built.uri).CT["s3"].to_numpy().max()) == 7
    assert built.CT.get_obs_row_by_obs_id("s3_CT")["obs_subject_id"].tolist() == ["s3"]


def test_volume_reads_and_exports_with_radiobject_calls(built: RadiObject, tmp_path) -> None:
    vol = built.CT["s2"]
    assert vol.slice(slice(0, 4), slice(0, 2), slice(0, 1)).shape == (4, 2, 1)
    assert vol.get_statistics(percentiles=[50])["p50"] == 2.0
    counts, _ = vol.compute_histogram(bins=4)
    assert counts.sum() == np.prod(SHAPE)
    written = vol.to_nifti(str(tmp_path / "out.nii"), compression=True)
    assert written.endswith(".nii.gz") and Path(written).is_file()
    assert vol.to_nifti(str(tmp_path / "plain.nii")).endswith("plain.nii")  # ours: the path as given


def test_reorient_stores_a_flipped_nifti_in_ras_orientation(tmp_path) -> None:
    import nibabel as nib

    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 2.0, 1.0])), path)
    vol = Volume.from_nifti(str(tmp_path / "v"), str(path), reorient=True)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(vol.to_numpy(), data[::-1, ::-1, :])
    as_given = Volume.from_nifti(str(tmp_path / "w"), str(path))
    np.testing.assert_array_equal(as_given.to_numpy(), data)


def test_radiobject_named_segmentation_dataset_refuses_collections_of_different_lengths(built: RadiObject) -> None:
    from radiobject_adapter.ml import SegmentationDataset

    with pytest.raises(ValueError, match="has 2 volumes, expected 3"):
        SegmentationDataset(image=built.CT, mask=built.seg.head(2))
