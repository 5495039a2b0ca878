"""Dataset front doors: collections as channels, class labels, slices, datalists, transforms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from monai.transforms import Compose, NormalizeIntensityd, RandFlipd, Spacingd

from radiobject_adapter import (
    DatasetConfig,
    LoadingMode,
    RadiObject,
    SegmentationDataset,
    TileDBDataset,
    VolumeCollectionDataset,
)


def test_full_volume_items_carry_image_label_ids_and_source_affine(ct_store: str, synthetic_ct) -> None:
    radi = RadiObject(ct_store)
    ds = SegmentationDataset(radi.CT, radi.seg)
    assert len(ds) == len(synthetic_ct.subject_ids)
    item = ds[1]
    vol = radi.CT[item["subject_id"]]
    assert item["image"].shape == (1, *vol.shape) and item["image"].dtype == torch.float32
    assert item["label"].shape == (1, *vol.shape) and item["label"].dtype == torch.uint8
    assert item["obs_id"] == vol.obs_id
    np.testing.assert_allclose(item["image"].affine.numpy(), vol.affine)
    np.testing.assert_array_equal(item["image"][0].numpy(), vol.to_numpy().astype(np.float32))


def test_several_collections_stack_as_channels_and_must_share_shapes(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    ds = VolumeCollectionDataset([radi.CT, radi.seg], DatasetConfig(loading_mode="patch", patch_size=(8, 8, 8)))
    item = ds[0]
    assert item["image"].shape == (2, 8, 8, 8)
    # a channel from another subject has another shape: refused with the volumes named
    other = [{"image": [radi.CT.iloc[0], radi.CT.iloc[1]]}]
    with pytest.raises(ValueError, match="must share a shape"):
        TileDBDataset(other)


@pytest.mark.parametrize("kind", ["subject_table_column", "obs_column", "dataframe", "dict", "callable"])
def test_class_labels_from_every_source(ct_store: str, kind: str) -> None:
    radi = RadiObject(ct_store)
    table = radi.obs_meta.set_index("obs_subject_id")
    expected = {f"{s}_CT": table.at[s, "diagnosis"] for s in radi.CT.subject_ids}
    source = {
        "subject_table_column": "diagnosis",
        "obs_column": "series_type",
        "dataframe": pd.DataFrame({"obs_id": list(expected), "y": list(expected.values())}),
        "dict": expected,
        "callable": lambda obs_id: expected[obs_id],
    }[kind]
    ds = VolumeCollectionDataset(radi.CT, labels=source)
    for i in range(len(ds)):
        item = ds[i]
        assert item["label"] == ("CT" if kind == "obs_column" else expected[item["obs_id"]])


def test_missing_label_column_names_what_exists(ct_store: str) -> None:
    with pytest.raises(KeyError, match="no column 'grade'"):
        VolumeCollectionDataset(RadiObject(ct_store).CT, labels="grade")


def test_config_modalities_choose_and_order_the_channels(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    both = VolumeCollectionDataset(radi, DatasetConfig(modalities=["seg", "CT"]))
    item = both[0]
    assert item["image"].shape[0] == 2
    assert torch.equal(item["image"][0], torch.from_numpy(radi.seg.iloc[0].to_numpy().astype(np.float32)))
    assert torch.equal(item["image"][1], torch.from_numpy(radi.CT.iloc[0].to_numpy().astype(np.float32)))
    chosen = VolumeCollectionDataset([radi.CT, radi.seg], DatasetConfig(modalities=["CT"]))
    assert chosen[0]["image"].shape[0] == 1 and [c.name for c in chosen.collections] == ["CT"]
    every = VolumeCollectionDataset(radi)
    assert [c.name for c in every.collections] == list(radi.collection_names)
    with pytest.raises(ValueError, match=r"modalities \['T2'\] are not collections"):
        VolumeCollectionDataset(radi, DatasetConfig(modalities=["T2"]))


def test_config_label_column_gives_class_labels_when_none_are_passed(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    ds = VolumeCollectionDataset(radi, DatasetConfig(modalities=["CT"], label_column="diagnosis"))
    table = radi.obs_meta.set_index("obs_subject_id")["diagnosis"]
    assert [ds[i]["label"] for i in range(len(ds))] == [table[s] for s in radi.CT.subject_ids]
    explicit = VolumeCollectionDataset(radi.CT, DatasetConfig(label_column="diagnosis"), labels=lambda o: 7)
    assert explicit[0]["label"] == 7  # labels given win over the config's column


@pytest.mark.parametrize(("axis", "plane"), [(0, "sagittal"), (1, "coronal"), (2, "axial")])
def test_slice_mode_yields_every_slice_of_every_volume_on_each_plane(ct_store: str, axis: int, plane: str) -> None:
    radi = RadiObject(ct_store)
    ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode=LoadingMode.SLICE_2D, slice_axis=plane))
    assert len(ds) == sum(v.shape[axis] for v in radi.CT)
    first = radi.CT.iloc[0]
    k = first.shape[axis] // 2
    item = ds[k]
    expected = first.plane(axis, k)
    assert item["image"].shape == (1, *expected.shape) and item["slice_index"] == k
    np.testing.assert_array_equal(item["image"][0].numpy(), expected.astype(np.float32))
    np.testing.assert_array_equal(item["label"][0].numpy(), radi.seg.iloc[0].plane(axis, k))
    assert item["image"].affine.shape == (3, 3)
    last = ds[len(ds) - 1]
    assert last["subject_id"] == radi.CT.subject_ids[-1]


def test_datalist_dataset_swaps_in_for_a_bundle_datalist(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    train = radi.datalist(image="CT", label="seg", split="train", val_fraction=0.34, columns=["age"])
    ds = TileDBDataset(train, DatasetConfig(loading_mode="patch", patch_size=(12, 12, 12), patches_per_volume=3))
    assert len(ds) == 3 * len(train)
    item = ds[4]
    assert item["subject_id"] == train[1]["subject_id"] and item["age"] == train[1]["age"]
    assert item["image"].shape == item["label"].shape == (1, 12, 12, 12)


def test_monai_dict_transforms_run_on_items(ct_store: str) -> None:
    radi = RadiObject(ct_store)
    keys = ["image", "label"]
    transform = Compose(
        [
            NormalizeIntensityd(keys="image", nonzero=True),
            RandFlipd(keys=keys, prob=1.0, spatial_axis=0),
            Spacingd(keys=keys, pixdim=(1.5, 1.5, 1.5), mode=("bilinear", "nearest")),
        ]
    )
    ds = SegmentationDataset(
        radi.CT, radi.seg, DatasetConfig(loading_mode="patch", patch_size=(16, 16, 16), seed=0), transform=transform
    )
    item = ds[0]
    np.testing.assert_allclose(item["image"].pixdim.numpy(), [1.5, 1.5, 1.5], rtol=1e-5)
    assert item["image"].shape == item["label"].shape
    assert abs(float(item["image"].mean())) < 1.0  # normalised


def test_subclass_can_replace_the_sample_loader(ct_store: str) -> None:
    class CenterSlices(SegmentationDataset):
        def load_sample(self, rec_index: int, sub_index: int) -> dict:
            sample = super().load_sample(rec_index, sub_index)
            sample["centre_value"] = float(sample["image"][0, 8, 8, 8])
            return sample

    radi = RadiObject(ct_store)
    ds = CenterSlices(radi.CT, radi.seg, DatasetConfig(loading_mode="patch", patch_size=(16, 16, 16)))
    item = ds[0]
    assert item["centre_value"] == float(item["image"][0, 8, 8, 8])
