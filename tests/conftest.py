"""Shared fixtures: small synthetic CT-like NIfTI datasets and stores made from them."""

from __future__ import annotations

import os

import pytest

from radiobject_adapter.synthetic import SyntheticDataset, make_ct_dataset

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def synthetic_ct(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """Six subjects of varying shape and spacing, oblique affines, int16 CT + uint8 labels."""
    root = tmp_path_factory.mktemp("synthetic_ct")
    return make_ct_dataset(str(root), n_subjects=6, shape_range=((40, 56), (36, 52), (24, 36)), oblique=True, seed=7)


@pytest.fixture(scope="session")
def ct_store(synthetic_ct: SyntheticDataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store (isotropic 16³ tiles) with collections ``CT`` and ``seg`` and a subject table."""
    from radiobject_adapter import ingest_niftis

    uri = str(tmp_path_factory.mktemp("stores") / "ct_store")
    report = ingest_niftis(
        uri,
        {"CT": synthetic_ct.images_dir, "seg": synthetic_ct.labels_dir},
        obs_meta=synthetic_ct.subject_table,
        tile_extent=16,
        progress=False,
    )
    assert report.ok, report.summary()
    return uri
