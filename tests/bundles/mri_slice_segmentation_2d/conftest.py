"""The isotropic store for the mri_slice_segmentation_2d scripts tests (``tiny_nifti`` and
``tiny_axial_store``, shared with the HPO driver tests, are in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from radiobject_adapter import ingest_niftis
from radiobject_adapter.synthetic import SyntheticDataset


@pytest.fixture(scope="session")
def tiny_isotropic_store(tiny_nifti: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("slice2d_stores") / "isotropic")
    report = ingest_niftis(
        uri, {"CT": tiny_nifti.images_dir, "seg": tiny_nifti.labels_dir}, tile_extent=16, progress=False
    )
    assert report.ok, report.summary()
    return uri
