"""``StoreOrNiftiReader``: one ``LoadImaged`` for store addresses and NIfTI files."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import LoadImage

from radiobject_adapter import volume_address
from radiobundles.readers import StoreOrNiftiReader, subject_id_of


def load(name):
    return LoadImage(reader=StoreOrNiftiReader, expanduser=False, image_only=True, ensure_channel_first=True)(name)


def test_address_and_source_file_load_to_the_same_tensor_and_affine(ct_store, synthetic_ct):
    sid = synthetic_ct.subject_ids[0]
    from_store = load(volume_address(ct_store, "CT", sid))
    from_file = load(synthetic_ct.images[0])
    assert from_store.shape == from_file.shape
    assert np.array_equal(from_store.numpy(), from_file.numpy())
    assert np.allclose(from_store.affine.numpy(), from_file.affine.numpy())


def test_verify_suffix_accepts_addresses_and_nifti_only(ct_store, synthetic_ct):
    reader = StoreOrNiftiReader()
    assert reader.verify_suffix(volume_address(ct_store, "seg", synthetic_ct.subject_ids[0]))
    assert reader.verify_suffix(synthetic_ct.labels[0])
    assert not reader.verify_suffix("notes.txt")


def test_stacking_an_address_with_a_file_is_refused(ct_store, synthetic_ct):
    names = [volume_address(ct_store, "CT", synthetic_ct.subject_ids[0]), synthetic_ct.images[0]]
    with pytest.raises(ValueError, match="cannot stack volume addresses and files"):
        StoreOrNiftiReader().read(names)


def test_an_address_in_the_old_hash_form_still_loads(ct_store, synthetic_ct):
    sid = synthetic_ct.subject_ids[0]
    address = volume_address(ct_store, "CT", sid)
    assert "::" in address and "#" not in address
    assert np.array_equal(load(address.replace("::", "#")).numpy(), load(address).numpy())


def test_subject_id_comes_from_store_meta_addresses_or_file_names():
    assert subject_id_of({"subject_id": "case_007"}) == "case_007"
    assert subject_id_of({"filename_or_obj": "/data/store::CT/case_003"}) == "case_003"
    assert subject_id_of({"filename_or_obj": "/data/store#CT/case_003"}) == "case_003"  # the old form
    assert subject_id_of({"filename_or_obj": "/data/imagesTr/case_004_0000.nii.gz"}) == "case_004"
    assert subject_id_of(None, fallback="item_0") == "item_0"
