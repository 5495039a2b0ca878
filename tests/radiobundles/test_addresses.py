"""Volume addresses survive MONAI's config parser, which turns every ``#`` into ``::``."""

from __future__ import annotations

from monai.bundle import ConfigParser

from radiobject_adapter import volume_address
from radiobundles.addresses import restore_address, restore_addresses


def test_an_address_through_a_config_override_is_restored(ct_store):
    address = volume_address(ct_store, "CT", "case_000")
    parser = ConfigParser({"data": []})
    parser["data"] = [{"image": address}]
    mangled = parser.get_parsed_content("data")[0]["image"]
    assert mangled != address  # what MONAI 1.6 does to '#'
    assert restore_address(mangled) == address
    assert restore_addresses({"image": [mangled], "label": mangled, "n": 1}) == {
        "image": [address],
        "label": address,
        "n": 1,
    }


def test_strings_that_are_not_store_addresses_are_left_alone(tmp_path):
    for text in ("/data/imagesTr/case_000_0000.nii.gz", f"{tmp_path}::CT/case_000", "a::b", 3):
        assert restore_address(text) == text
