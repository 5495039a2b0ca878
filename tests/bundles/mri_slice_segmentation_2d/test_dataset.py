from __future__ import annotations

import numpy as np
import pytest

from bundles.mri_slice_segmentation_2d.scripts.dataset import AxialSliceDataset
from radiobject_adapter import RadiObject, Volume
from radiobundles.datalists import make_datalist


def test_one_item_per_axial_slice_equal_to_the_stored_slice(tiny_axial_store):
    data = make_datalist(tiny_axial_store, "all")
    ds = AxialSliceDataset(data)
    store = RadiObject(tiny_axial_store)
    assert len(ds) == sum(store.CT[d["subject_id"]].shape[2] for d in data)
    item = ds[10]
    sid, z = ds.slice_of(10)
    assert (item["subject_id"], item["slice_index"]) == (sid, z)
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == np.float32
    np.testing.assert_array_equal(item["image"][0], store.CT[sid].to_numpy()[:, :, z])
    np.testing.assert_array_equal(item["label"][0], store.seg[sid].to_numpy()[:, :, z])


def test_items_read_single_slices_not_volumes(tiny_axial_store, monkeypatch):
    reads = []
    original = Volume.read_box

    def recording(self, bounds):
        reads.append(tuple(bounds))
        return original(self, bounds)

    monkeypatch.setattr(Volume, "read_box", recording)
    ds = AxialSliceDataset(make_datalist(tiny_axial_store, "train", 0.25, 0))
    reads.clear()
    ds[3]
    assert len(reads) == 2  # image and label
    assert all(box[2][1] - box[2][0] == 1 for box in reads)


def test_transform_is_applied_to_each_slice(tiny_axial_store):
    ds = AxialSliceDataset(make_datalist(tiny_axial_store, "all"), transform=lambda d: {**d, "seen": True})
    assert ds[0]["seen"]


def test_entries_without_an_address_are_rejected(tiny_axial_store):
    data = [{k: v for k, v in d.items() if k != "label"} for d in make_datalist(tiny_axial_store, "all")]
    with pytest.raises(KeyError, match=r"has no \['label'\]"):
        AxialSliceDataset(data)
