from __future__ import annotations

import pytest

from bundles.mri_slice_segmentation_2d.scripts.data import resolve_image_collection, slice_loading
from radiobject_adapter import ingest_niftis


def test_axial_stores_are_read_as_slices_everything_else_as_volumes(tiny_nifti, tiny_axial_store, tiny_isotropic_store):
    assert slice_loading(tiny_axial_store) == "slices"
    assert slice_loading(tiny_isotropic_store) == "volumes"
    assert slice_loading(tiny_nifti.root) == "volumes"


def test_the_loading_mode_is_one_override_away(tiny_axial_store, tiny_isotropic_store, caplog):
    assert slice_loading(tiny_axial_store, mode="volumes") == "volumes"
    assert slice_loading(tiny_isotropic_store, mode="slices") == "slices"
    assert "not axially tiled" in caplog.text


def test_slices_cannot_be_read_from_a_nifti_folder(tiny_nifti):
    with pytest.raises(ValueError, match=r"single slices need a store.*--tiling axial"):
        slice_loading(tiny_nifti.root, mode="slices")


def test_an_unknown_loading_mode_is_rejected(tiny_axial_store):
    with pytest.raises(ValueError, match="loading mode must be one of"):
        slice_loading(tiny_axial_store, mode="patches")


def test_the_image_collection_is_guessed_only_when_unambiguous(tiny_nifti, tiny_axial_store, tmp_path):
    assert resolve_image_collection(tiny_axial_store) == "CT"
    assert resolve_image_collection(tiny_axial_store, "CT") == "CT"
    assert resolve_image_collection(tiny_nifti.root) == "auto"  # folders have no collections
    with pytest.raises(KeyError, match="T1w"):
        resolve_image_collection(tiny_axial_store, "T1w")
    two = str(tmp_path / "two")
    ingest_niftis(two, {"T1w": tiny_nifti.images_dir, "T2w": tiny_nifti.images_dir}, progress=False)
    with pytest.raises(ValueError, match="--image_collection"):
        resolve_image_collection(two)
