"""Tiny data for the HPO driver tests: 4 subjects of 32x32x8 as NIfTI and an axial store (the bundle's own
scripts tests have theirs in ``tests/bundles/mri_slice_segmentation_2d/conftest.py``)."""

from __future__ import annotations

import pytest

from radiobject_adapter import ingest_niftis
from radiobject_adapter.synthetic import SyntheticDataset, make_ct_dataset


@pytest.fixture(scope="session")
def tiny_nifti(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("slice2d_nifti")
    return make_ct_dataset(str(root), n_subjects=4, shape_range=((32, 32), (32, 32), (8, 8)), n_classes=1, seed=3)


@pytest.fixture(scope="session")
def tiny_axial_store(tiny_nifti: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("slice2d_stores") / "axial")
    report = ingest_niftis(
        uri, {"CT": tiny_nifti.images_dir, "seg": tiny_nifti.labels_dir}, tiling="axial", progress=False
    )
    assert report.ok, report.summary()
    return uri
