"""radiobject's modules on ours: query, indexing, dataframe, imaging_metadata, ingest, utils,
and the ctx names of its threading tests."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tiledb

from radiobject_adapter import RadiObject, Volume, VolumeCollection
from radiobject_adapter.dataframe import INDEX_COLUMNS, Dataframe
from radiobject_adapter.imaging_metadata import KNOWN_SERIES_TYPES, extract_nifti_metadata, infer_series_type
from radiobject_adapter.indexing import Index
from radiobject_adapter.ingest import discover_nifti_pairs
from radiobject_adapter.query import CollectionQuery, Query, QueryCount, VolumeBatch
from radiobject_adapter.utils import affine_to_json, affine_to_list

SHAPE = (12, 10, 6)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> RadiObject:
    """4 subjects (voxels = subject number), collections CT and seg, an ``age`` column."""
    tmp = tmp_path_factory.mktemp("query")
    cols = {}
    for name in ("CT", "seg"):
        vols = []
        for i in range(4):
            vol = Volume.from_numpy(str(tmp / f"{name}{i}"), np.full(SHAPE, i + 1, np.float32))
            vols.append((f"s{i}_{name}", vol))
        obs = pd.DataFrame({"obs_id": [o for o, _ in vols], "obs_subject_id": [f"s{i}" for i in range(4)]})
        cols[name] = VolumeCollection.from_volumes(str(tmp / name), vols, obs_data=obs, name=name)
    table = pd.DataFrame({"obs_subject_id": [f"s{i}" for i in range(4)], "age": [30, 45, 60, 75]})
    return RadiObject.from_collections(str(tmp / "store"), cols, obs_meta=table)


def test_query_filters_chain_and_count_subjects_and_volumes(store: RadiObject) -> None:
    q = store.lazy()
    assert isinstance(q, Query) and len(q) == 4
    narrowed = q.filter("age > 40").filter_subjects(["s1", "s3", "s0"]).select_collections(["CT"])
    assert narrowed.count() == QueryCount(n_subjects=2, n_volumes={"CT": 2})
    assert list(narrowed.to_obs_meta()["obs_subject_id"]) == ["s1", "s3"]
    assert len(q.iloc(-1)) == 1 and len(q.iloc([0, 2])) == 2 and len(q.loc("s2")) == 1
    assert len(q.head(3).tail(1)) == 1 and list(q.head(3).tail(1).to_obs_meta()["age"]) == [60]
    assert q.sample(2, seed=7).subject_ids == q.sample(2, seed=7).subject_ids
    assert len(q.filter_collection("CT", "obs_id == 's2_CT'")) == 1
    assert "4 subjects" in repr(q)


def test_query_batches_stack_transformed_voxels_per_collection(store: RadiObject) -> None:
    batches = list(store.lazy().map(lambda v: v * 10).iter_batches(batch_size=3))
    assert [b.subject_ids for b in batches] == [("s0", "s1", "s2"), ("s3",)]
    first = batches[0]
    assert isinstance(first, VolumeBatch) and first.volumes["CT"].shape == (3, *SHAPE)
    assert [float(v.max()) for v in first.volumes["seg"]] == [10.0, 20.0, 30.0]
    assert first.obs_ids["CT"] == ("s0_CT", "s1_CT", "s2_CT")


def test_materialize_writes_the_selection_through_composed_maps(store: RadiObject, tmp_path: Path) -> None:
    out = store.lazy().iloc([1, 3]).select_collections(["CT"]).map(lambda v: v * 2).map(lambda v: v + 1)
    new = out.materialize(str(tmp_path / "out"))
    assert new.collection_names == ("CT",) and new.obs_subject_ids == ["s1", "s3"]
    assert [float(v.to_numpy().max()) for v in new.CT] == [5.0, 9.0]  # (2*2+1, 4*2+1)
    assert list(new.obs_meta["age"]) == [45, 75]
    copy = store.iloc[[0]].materialize(str(tmp_path / "view"))  # a view's own materialize
    assert copy.obs_subject_ids == ["s0"] and copy.n_collections == 2


def test_collection_query_selects_stacks_and_materializes(store: RadiObject, tmp_path: Path) -> None:
    q = store.CT.lazy()
    assert isinstance(q, CollectionQuery) and q.count() == 4
    assert q.iloc(0).count() == 1 and q.loc("s2_CT").count() == 1 and q.filter_subjects(["s3"]).count() == 1
    assert q.head(2).to_numpy_stack().shape == (2, *SHAPE)
    assert list(q.sample(2, seed=1).to_obs()["obs_id"]) == list(q.sample(2, seed=1).to_obs()["obs_id"])
    new = store.CT.map(lambda v: -v).materialize(str(tmp_path / "neg"))
    assert isinstance(new, VolumeCollection) and len(new) == 4
    assert float(new.iloc[3].to_numpy().min()) == -4.0
    with pytest.raises(KeyError, match="nope"):
        q.loc("nope")


def test_index_maps_keys_and_positions_both_ways(store: RadiObject) -> None:
    idx = Index.build(["b", "a", "c"])
    assert idx.keys == ("b", "a", "c") and idx.get_index("c") == 2 and idx.get_key(1) == "a"
    assert "a" in idx and "z" not in idx and len(idx) == 3
    with pytest.raises(ValueError, match="Duplicate keys"):
        Index.build(["a", "a"])
    with pytest.raises(IndexError, match="out of range"):
        idx.get_key(-1)
    with pytest.raises(KeyError, match="not found"):
        idx.get_index("z")
    assert store.index.keys == ("s0", "s1", "s2", "s3") and store.CT.index.get_key(2) == "s2_CT"


def test_dataframe_keeps_column_types_and_reads_by_condition(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"obs_subject_id": ["a", "b"], "obs_id": ["a1", "b1"], "age": np.array([40, 61], np.int32), "site": ["x", "y"]}
    )
    df = Dataframe.from_pandas(str(tmp_path / "df"), frame)
    assert len(df) == 2 and df.columns == ["age", "site"] and df.index_columns == INDEX_COLUMNS
    assert df.dtypes["age"] == np.int32
    hit = df.read(columns=["age"], value_filter="age > 50")
    assert list(hit.columns) == ["obs_subject_id", "obs_id", "age"] and list(hit["obs_subject_id"]) == ["b"]
    assert list(df.read(["site"], include_index=False).columns) == ["site"]
    with pytest.raises(ValueError, match="index column"):
        Dataframe.from_pandas(str(tmp_path / "bad"), frame.drop(columns=["obs_id"]))
    with pytest.raises(ValueError, match="conflicts with index column"):
        Dataframe.create(str(tmp_path / "bad2"), {"obs_id": np.int32})


def test_empty_store_and_collection_take_typed_columns(tmp_path: Path) -> None:
    radi = RadiObject._create(str(tmp_path / "s"), obs_meta_schema={"age": np.int32, "dx": np.dtype("U64")})
    assert len(radi) == 0 and radi.n_collections == 0 and {"age", "dx"} <= set(radi.obs_meta.columns)
    col = VolumeCollection._create(str(tmp_path / "c"), shape=SHAPE, obs_schema={"kvp": np.float32})
    assert col.shape == SHAPE and len(col) == 0 and "kvp" in col.obs.columns


def test_series_types_and_nifti_header_facts(tmp_path: Path) -> None:
    assert infer_series_type("sub-01_ses-01_T1w.nii.gz") == "T1w"
    assert infer_series_type("sub-01_dwi.nii.gz") == "dwi"
    assert infer_series_type("T1GD_post.nii.gz") == "T1gd" and infer_series_type("lung_003.nii.gz") == "CT"
    assert infer_series_type("scan_001.nii.gz") == "unknown"
    assert {"CT", "CTA", "FLAIR", "bold"} <= KNOWN_SERIES_TYPES
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.diag([0.5, 0.5, 2.0, 1.0])), path)
    meta = extract_nifti_metadata(path)
    assert meta.dimensions == SHAPE and meta.voxel_spacing == (0.5, 0.5, 2.0) and meta.axcodes == "RAS"
    assert json.loads(meta.affine_json)[2][2] == 2.0 and meta.source_path == str(path.absolute())
    with pytest.raises(FileNotFoundError):
        extract_nifti_metadata(tmp_path / "missing.nii.gz")


def test_discover_pairs_images_with_labels_by_subject(tmp_path: Path) -> None:
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "images" / f"case_{i}.nii.gz")
    for i in (0, 2):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), tmp_path / "labels" / f"case_{i}.nii.gz")
    sources = discover_nifti_pairs(tmp_path / "images", tmp_path / "labels")
    assert [(s.subject_id, s.has_label) for s in sources] == [("case_0", True), ("case_1", False), ("case_2", True)]
    with pytest.raises(FileNotFoundError):
        discover_nifti_pairs(tmp_path / "nowhere")


def test_affine_helpers_round_trip_through_json() -> None:
    affine = np.array([[0.5, 0, 0, 10.5], [0, 0.5, 0, -5], [0, 0, 2, 0], [0, 0, 0, 1]])
    assert affine_to_list(affine)[0][3] == 10.5
    np.testing.assert_array_equal(np.array(json.loads(affine_to_json(affine))), affine)


def test_threading_names_of_radiobject_ctx() -> None:
    from radiobject_adapter import configure, ctx, get_config
    from radiobject_adapter.ctx import IOConfig, RadiObjectConfig
    from radiobject_adapter.parallel import create_worker_ctx

    before = get_config().read
    try:
        configure(io=IOConfig(max_workers=8))
        assert get_config().io.max_workers == 8
        with pytest.raises(ValueError, match="not both"):
            configure(read=before, io=before)
    finally:
        configure(read=before)
    assert isinstance(ctx(), tiledb.Ctx)  # the module is callable, as radiobject's function
    cfg = RadiObjectConfig(io=IOConfig(concurrency=3))
    assert cfg.to_tiledb_ctx().config()["sm.compute_concurrency_level"] == "3"
    assert create_worker_ctx() is not create_worker_ctx()


def test_user_obs_columns_survive_building_and_copying(tmp_path: Path) -> None:
    vols = [(f"s{i}_CT", Volume.from_numpy(str(tmp_path / f"v{i}"), np.zeros(SHAPE, np.float32))) for i in range(2)]
    obs = pd.DataFrame(
        {"obs_id": ["s0_CT", "s1_CT"], "obs_subject_id": ["s0", "s1"], "age": [45, 52], "dx": ["a", "b"]}
    )
    col = VolumeCollection.from_volumes(str(tmp_path / "ct"), vols, obs_data=obs, name="CT")
    assert col.get_obs_row_by_obs_id("s1_CT")[["age", "dx"]].values.tolist() == [[52, "b"]]
    copy = RadiObject.from_collections(str(tmp_path / "store"), {"CT": col})
    assert list(copy.CT.obs["age"]) == [45, 52] and list(copy.CT.obs["dx"]) == ["a", "b"]


def test_planes_of_a_4d_volume_take_a_time_point(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((*SHAPE, 3)).astype(np.float32)
    vol = Volume.from_numpy(str(tmp_path / "v4"), data)
    np.testing.assert_array_equal(vol.axial(2, t=1), data[:, :, 2, 1])
    np.testing.assert_array_equal(vol.sagittal(3, t=2), data[3, :, :, 2])
    np.testing.assert_array_equal(vol.coronal(4, t=0), data[:, 4, :, 0])
