"""Predictions into a store collection (source grid and affine, versioned) and NIfTI names by subject."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tiledb
import torch
from monai.data import MetaTensor
from monai.transforms import SaveImage

from radiobject_adapter import RadiObject, Volume, volume_address
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobundles.ct3d import SaveToStored, subject_name_formatter


@pytest.fixture()
def store(ct_store, tmp_path):
    return shutil.copytree(ct_store, tmp_path / "store")


def prediction_for(store, sid: str, value: int = 1) -> MetaTensor:
    image = RadiObject(store).CT[sid]
    data = np.zeros(image.shape, dtype=np.uint8)
    data[2:6, 2:6, 2:6] = value
    meta = {"filename_or_obj": volume_address(str(store), "CT", sid), "subject_id": sid}
    return MetaTensor(torch.from_numpy(data)[None], affine=torch.as_tensor(image.affine), meta=meta)


def test_predictions_become_a_collection_on_the_source_grid(store):
    sid = RadiObject(store).CT.subject_ids[0]
    SaveToStored(keys="pred", collection="pred")({"pred": prediction_for(store, sid)})
    radi = RadiObject(store)
    written = radi.pred[sid]
    assert written.shape == radi.CT[sid].shape
    assert np.allclose(written.affine, radi.CT[sid].affine)
    assert int(written.to_numpy().sum()) == 64
    assert ForegroundIndex.from_metadata(written.metadata).foreground_classes == [1]


def test_writing_a_subject_again_keeps_the_earlier_prediction_by_time_travel(store):
    sid = RadiObject(store).CT.subject_ids[0]
    save = SaveToStored(keys="pred", collection="pred")
    save({"pred": prediction_for(store, sid, value=1)})
    uri = RadiObject(store).pred.uri_of(sid)
    with tiledb.open(uri) as arr:
        t_first = arr.timestamp_range[1]
    save({"pred": prediction_for(store, sid, value=2)})
    assert RadiObject(store).pred.uri_of(sid) == uri
    assert int(Volume(uri).to_numpy().max()) == 2
    assert int(Volume(uri, timestamp=t_first).to_numpy().max()) == 1


def test_predictions_of_files_need_a_store(store):
    pred = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "/data/case_000_0000.nii.gz"})
    with pytest.raises(ValueError, match="give the store to write predictions into"):
        SaveToStored(keys="pred", collection="pred")({"pred": pred})
    SaveToStored(keys="pred", collection="pred", store=str(store))({"pred": pred})
    assert RadiObject(store).pred["case_000"].shape == (4, 4, 4)


def test_nifti_outputs_are_named_after_the_subject(tmp_path):
    save = SaveImage(
        output_dir=str(tmp_path),
        output_postfix="seg",
        separate_folder=False,
        output_name_formatter=subject_name_formatter,
    )
    save(MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "/d/store#CT/case_009"}))
    save(MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "/d/imagesTr/case_010_0000.nii.gz"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_009_seg.nii.gz", "case_010_seg.nii.gz"]
