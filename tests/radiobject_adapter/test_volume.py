"""Partial reads equal the same crop of the nibabel array; planes; affine and spacing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from radiobject_adapter import RadiObject


@pytest.fixture(scope="module")
def pairs(ct_store: str, synthetic_ct):
    radi = RadiObject(ct_store)
    return [(radi.CT[sid], nib.load(path)) for sid, path in zip(synthetic_ct.subject_ids, synthetic_ct.images)]


def test_random_partial_reads_match_nibabel_crops(pairs) -> None:
    rng = np.random.default_rng(0)
    for vol, img in pairs:
        ref = np.asanyarray(img.dataobj)
        for _ in range(10):
            lo = [int(rng.integers(0, n)) for n in vol.shape]
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, vol.shape)]
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            np.testing.assert_array_equal(vol[box], ref[box])


def test_planes_integers_and_negative_indices(pairs) -> None:
    vol, img = pairs[0]
    ref = np.asanyarray(img.dataobj)
    np.testing.assert_array_equal(vol.axial(3), ref[:, :, 3])
    np.testing.assert_array_equal(vol.sagittal(5), ref[5])
    np.testing.assert_array_equal(vol.coronal(-1), ref[:, -1, :])
    np.testing.assert_array_equal(vol.plane("axial", 2), ref[:, :, 2])
    np.testing.assert_array_equal(vol[2:9, ..., -3], ref[2:9, ..., -3])
    np.testing.assert_array_equal(vol.to_numpy(), ref)


def test_out_of_range_and_strided_reads_are_refused(pairs) -> None:
    vol, _ = pairs[0]
    with pytest.raises(IndexError, match="out of range"):
        vol.axial(vol.shape[2])
    with pytest.raises(IndexError, match="step 1"):
        vol[::2]


def test_affine_spacing_shape_dtype_come_from_the_source(pairs) -> None:
    for vol, img in pairs:
        np.testing.assert_allclose(vol.affine, img.affine)
        np.testing.assert_allclose(vol.spacing, img.header.get_zooms()[:3], rtol=1e-5)
        assert vol.shape == img.shape and vol.dtype == img.get_data_dtype()


def test_to_nifti_round_trips(pairs, tmp_path) -> None:
    vol, img = pairs[1]
    out = nib.load(vol.to_nifti(str(tmp_path / "v.nii.gz")))
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(img.dataobj))
    np.testing.assert_allclose(out.affine, img.affine, atol=1e-5)


def test_permanent_read_failure_names_the_volume_and_the_cause(ct_store: str, tmp_path) -> None:
    import shutil

    from radiobject_adapter import ReadConfig, VolumeReadError, configure
    from radiobject_adapter.config import current_settings

    copy = tmp_path / "copy"
    shutil.copytree(ct_store, copy)
    vol = RadiObject(str(copy)).CT.iloc[0]
    vol[0:2, 0:2, 0:2]
    old = current_settings().read
    configure(read=ReadConfig(retries=2, retry_backoff_s=0.01))
    try:
        shutil.rmtree(vol.uri.replace("file://", "") + "/__fragments")
        with pytest.raises(VolumeReadError, match=r"reading .*volumes/0 failed after 3 attempt\(s\)"):
            vol[0:4, 0:4, 0:4]
    finally:
        configure(read=old)


def test_affine_spacing_equals_monais_affine_to_spacing_for_oblique_affines() -> None:
    from monai.data.utils import affine_to_spacing

    from radiobject_adapter.store.layout import affine_spacing
    from radiobject_adapter.synthetic import random_affine

    rng = np.random.default_rng(0)
    for spacing in ((0.7, 0.9, 2.5), (1.0, 1.0, 1.0), (3.0, 0.5, 1.2)):
        affine = random_affine(spacing, rng, oblique=True)
        np.testing.assert_allclose(affine_spacing(affine), affine_to_spacing(affine, r=3), rtol=1e-12)
        np.testing.assert_allclose(affine_spacing(affine), spacing, rtol=1e-9)
