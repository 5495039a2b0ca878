"""Volume addresses: the ``::`` form is written and survives MONAI bundle configs; ``#`` is still read."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from radiobject_adapter.address import (
    collection_address,
    is_volume_address,
    parse_address,
    split_collection_address,
    volume_address,
)
from radiobject_adapter.store.resolve import resolve_volume


def test_the_old_hash_form_parses_to_the_same_address():
    new = volume_address("s3://bucket/ct", "seg", "case_001")
    assert new == "s3://bucket/ct::seg/case_001"
    assert parse_address("s3://bucket/ct#seg/case_001") == parse_address(new)
    assert str(parse_address("s3://bucket/ct#seg/case_001")) == new  # printed in the new form
    assert not is_volume_address("/data/imagesTr/case_001_0000.nii.gz")
    assert not is_volume_address("/data/ct::seg")  # a collection, not a volume


def test_collection_addresses_split_and_refuse_separators_in_names():
    assert collection_address("/data/ct/", "CT") == "/data/ct::CT"
    assert split_collection_address("/data/ct::CT") == ("/data/ct", "CT")
    assert split_collection_address("/data/ct#CT") == ("/data/ct", "CT")
    assert split_collection_address("/data/ct") == ("/data/ct", None)
    assert split_collection_address("/data/ct::CT/case_001") == ("/data/ct::CT/case_001", None)
    with pytest.raises(ValueError, match="may not contain"):
        collection_address("/data/a::b", "CT")
    with pytest.raises(ValueError, match="may not contain"):
        collection_address("/data/ct", "C/T")


def test_monai_config_values_keep_new_addresses_and_turn_old_ones_into_new(ct_store, synthetic_ct):
    sid = synthetic_ct.subject_ids[0]
    address = volume_address(ct_store, "CT", sid)
    parser = ConfigParser({"dataset_dir": "/placeholder", "data": [], "nested": {"image": "@dataset_dir"}})
    parser["dataset_dir"] = collection_address(ct_store, "CT")  # as --dataset_dir <store>::CT sets it
    parser["data"] = [{"image": address, "label": address.replace("::", "#")}]  # as MONAI Label overrides
    data = parser.get_parsed_content("data")
    assert data == [{"image": address, "label": address}]
    assert parser.get_parsed_content("nested")["image"] == f"{ct_store}::CT"
    assert resolve_volume(data[0]["label"]).uri == resolve_volume(address).uri
