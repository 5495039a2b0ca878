"""TileDBReader gives MONAI exactly what NibabelReader gives for the source files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import NibabelReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged, Spacingd

from radiobject_adapter import RadiObject, TileDBReader, ingest_niftis, parse_address, volume_address
from radiobject_adapter.synthetic import random_affine


@pytest.fixture(scope="module")
def typed_store(tmp_path_factory):
    """int16, uint8 and float32 volumes with oblique affines, one collection per dtype."""
    root = tmp_path_factory.mktemp("typed")
    rng = np.random.default_rng(11)
    files: dict[str, list[str]] = {}
    for dtype in (np.int16, np.uint8, np.float32):
        folder = root / np.dtype(dtype).name
        folder.mkdir()
        for i in range(2):
            shape = tuple(int(s) for s in rng.integers(9, 21, size=3))
            data = (rng.normal(50, 30, size=shape)).astype(dtype)
            path = folder / f"s{i}.nii.gz"
            nib.save(nib.Nifti1Image(data, random_affine(rng.uniform(0.5, 3, 3), rng, oblique=True)), path)
            files.setdefault(np.dtype(dtype).name, []).append(str(path))
    store = str(root / "store")
    report = ingest_niftis(store, {name: str(root / name) for name in files}, tile_extent=8, progress=False)
    assert report.ok
    return store, files


@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
def test_loadimage_matches_nibabel_reader_values_dtype_and_meta(typed_store, dtype: str) -> None:
    store, files = typed_store
    for path in files[dtype]:
        sid = Path(path).name.split(".")[0]
        ours = LoadImage(reader="radiobject_adapter.TileDBReader", expanduser=False, dtype=None, image_only=True)(
            volume_address(store, dtype, sid)
        )
        ref = LoadImage(reader=NibabelReader(), dtype=None, image_only=True)(path)
        assert ours.dtype == ref.dtype == getattr(torch, dtype)
        assert torch.equal(ours.as_tensor(), ref.as_tensor())
        for key in ("affine", "original_affine", "spatial_shape"):
            np.testing.assert_array_equal(np.asarray(ours.meta[key]), np.asarray(ref.meta[key]), err_msg=key)
            assert np.asarray(ours.meta[key]).dtype == np.asarray(ref.meta[key]).dtype, key
        assert ours.meta["space"] == ref.meta["space"]
        assert np.isnan(ours.meta["original_channel_dim"]) and np.isnan(ref.meta["original_channel_dim"])
        np.testing.assert_array_equal(ours.affine, ref.affine)


def test_datalist_through_loadimaged_and_spacing_transform(ct_store: str, synthetic_ct) -> None:
    radi = RadiObject(ct_store)
    item = radi.datalist(image="CT", label="seg")[0]
    keys = ["image", "label"]
    pipeline = Compose(
        [
            LoadImaged(keys, reader="radiobject_adapter.TileDBReader", expanduser=False),
            EnsureChannelFirstd(keys),
            Spacingd(keys, pixdim=(2.0, 2.0, 2.0), mode=("bilinear", "nearest")),
        ]
    )
    out = pipeline(item)
    ref = Compose(
        [
            LoadImaged(keys, reader=NibabelReader()),
            EnsureChannelFirstd(keys),
            Spacingd(keys, (2.0, 2.0, 2.0), mode=("bilinear", "nearest")),
        ]
    )({"image": synthetic_ct.images[0], "label": synthetic_ct.labels[0]})
    assert out["image"].shape == ref["image"].shape
    torch.testing.assert_close(out["image"].as_tensor(), ref["image"].as_tensor())
    assert torch.equal(out["label"].as_tensor(), ref["label"].as_tensor())


def test_several_collections_stack_as_channels(typed_store) -> None:
    store, _ = typed_store
    reader = TileDBReader()
    img = reader.read([volume_address(store, "int16", "s0"), volume_address(store, "int16", "s0")])
    data, meta = reader.get_data(img)
    assert data.shape[0] == 2 and meta["original_channel_dim"] == 0


def test_reader_claims_addresses_only() -> None:
    reader = TileDBReader()
    assert reader.verify_suffix("s3://bucket/store::CT/case_001")
    assert reader.verify_suffix("/data/store::seg/case_001")
    assert reader.verify_suffix("s3://bucket/store#CT/case_001")  # the old form
    assert reader.verify_suffix("/data/store#seg/case_001")
    assert not reader.verify_suffix("/data/case_001.nii.gz")


def test_address_round_trip_and_malformed_addresses() -> None:
    addr = volume_address("s3://bucket/my store", "CT", "case_001")
    assert addr == "s3://bucket/my store::CT/case_001"
    parsed = parse_address(addr)
    assert (parsed.store, parsed.collection, parsed.key) == ("s3://bucket/my store", "CT", "case_001")
    with pytest.raises(ValueError, match="not a volume address"):
        parse_address("/data/store/CT/case_001")
    with pytest.raises(ValueError, match="may not contain"):
        volume_address("/a#b", "CT", "x")
