"""A store whose label has a tiny foreground (under 0.1% of voxels) for sampling tests."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from radiobject_adapter import ingest_niftis


@pytest.fixture(scope="session")
def sparse_store(tmp_path_factory) -> str:
    """Two 64x64x48 int16 volumes, 16³ tiles; subject a has a 3x3x3 class-1 blob and a
    2-voxel class-2 speck (29 of 196608 voxels, 0.015%); subject b has only the blob."""
    root = tmp_path_factory.mktemp("sparse")
    (root / "img").mkdir()
    (root / "lbl").mkdir()
    rng = np.random.default_rng(0)
    for sid, speck in (("a", True), ("b", False)):
        image = rng.normal(0, 10, size=(64, 64, 48)).astype(np.int16)
        label = np.zeros(image.shape, np.uint8)
        label[40:43, 10:13, 30:33] = 1
        if speck:
            label[5, 60, 2] = label[6, 60, 2] = 2
        affine = np.diag([0.8, 0.8, 2.0, 1.0])
        nib.save(nib.Nifti1Image(image, affine), root / "img" / f"{sid}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "lbl" / f"{sid}.nii.gz")
    uri = str(root / "store")
    assert ingest_niftis(uri, {"img": str(root / "img"), "seg": str(root / "lbl")}, tile_extent=16, progress=False).ok
    return uri
