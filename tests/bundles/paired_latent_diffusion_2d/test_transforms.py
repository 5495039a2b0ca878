"""Masked local normalisation, dict-to-tuple, and the preprocessing pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity, NormalizeIntensityd

from bundles.paired_latent_diffusion_2d.scripts.io import TifReader
from bundles.paired_latent_diffusion_2d.scripts.transforms import (
    STORE_READER,
    DictToTuple,
    paired_transforms,
)


def masked_normalize() -> NormalizeIntensity:
    """What the pipeline normalises with (pinned by test_the_pipeline_normalises_with_...)."""
    return NormalizeIntensity(nonzero=True, channel_wise=True, dtype=np.float32)


def masked_normalize_dict(keys: list[str]) -> NormalizeIntensityd:
    return NormalizeIntensityd(keys, nonzero=True, channel_wise=True, dtype=np.float32)


def _image_with_background() -> torch.Tensor:
    image = torch.zeros(1, 12, 10)
    image[0, 3:9, 2:8] = torch.linspace(100.0, 900.0, 36).reshape(6, 6)
    return image


def test_background_stays_exactly_zero_and_foreground_is_z_scored():
    image = _image_with_background()
    out = masked_normalize()(image)
    foreground = image != 0
    assert torch.all(out[~foreground] == 0)
    assert out[foreground].mean().abs() < 1e-5
    assert torch.isclose(out[foreground].std(unbiased=False), torch.tensor(1.0), atol=1e-5)
    assert out.dtype == torch.float32


def test_statistics_ignore_background_unlike_plain_z_scoring():
    image = _image_with_background()
    masked = masked_normalize()(image)
    plain = NormalizeIntensity()(image)
    assert not torch.allclose(masked, plain)


def test_the_pipeline_normalises_with_monais_nonzero_channel_wise_normalisation():
    steps = [t for t in paired_transforms(["target"], patch_size=8).transforms if isinstance(t, NormalizeIntensityd)]
    assert len(steps) == 1
    normalizer = steps[0].normalizer
    assert normalizer.nonzero and normalizer.channel_wise and normalizer.dtype == np.float32
    image = torch.rand(2, 8, 8) * (torch.rand(2, 8, 8) > 0.4)
    expected = NormalizeIntensity(nonzero=True, channel_wise=True)(image.clone())
    torch.testing.assert_close(normalizer(image.clone()), expected)


@pytest.mark.parametrize("image", [torch.full((1, 6, 6), 7.0), torch.zeros(1, 6, 6)], ids=["constant", "empty"])
def test_constant_or_empty_image_gives_finite_zeros(image):
    out = masked_normalize()(image)
    assert torch.isfinite(out).all()
    assert torch.all(out == 0)


def test_dict_version_normalises_each_key_with_its_own_statistics():
    pair = {
        "target": _image_with_background(),
        "condition": _image_with_background() * 3 + (_image_with_background() != 0) * 50,
    }
    out = masked_normalize_dict(["target", "condition"])(pair)
    torch.testing.assert_close(out["target"], out["condition"], atol=1e-5, rtol=1e-5)


def test_dict_to_tuple_returns_values_in_key_order_and_a_single_value_alone():
    item = {"target": 1, "condition": 2, "name": "a"}
    assert DictToTuple(["condition", "target"])(item) == (2, 1)
    assert DictToTuple("target")(item) == 1
    with pytest.raises(KeyError, match="missing"):
        DictToTuple(["missing"])(item)


def test_tif_reader_keeps_numpy_row_column_order(paired_tifs):
    import tifffile
    from monai.transforms import LoadImage

    path = f"{paired_tifs.target_dir}/img_000.tif"
    image = LoadImage(reader=TifReader(), image_only=True, ensure_channel_first=True)(path)
    assert tuple(image.shape) == (1, 24, 20)
    np.testing.assert_array_equal(np.asarray(image[0]), tifffile.imread(path))


def test_pipeline_outputs_float32_patch_with_background_zero(paired_tifs):
    t = paired_transforms(["target", "condition"], patch_size=(24, 20), output_keys=["target", "condition"])
    target, condition = t(
        {"target": f"{paired_tifs.target_dir}/img_003.tif", "condition": f"{paired_tifs.condition_dir}/img_003.tif"}
    )
    import tifffile

    raw = tifffile.imread(f"{paired_tifs.target_dir}/img_003.tif")
    assert target.shape == condition.shape == (1, 24, 20) and target.dtype == torch.float32
    assert torch.all(target[0][torch.from_numpy(raw == 0)] == 0)
    resized = paired_transforms(["target"], patch_size=16, output_keys=["target"])(
        {"target": f"{paired_tifs.target_dir}/img_003.tif"}
    )
    assert resized.shape == (1, 16, 16) and (resized == 0).any()


def test_augmentation_moves_both_images_of_a_pair_identically(paired_tifs):
    t = paired_transforms(
        ["target", "condition"], patch_size=(24, 20), augment=True, output_keys=["target", "condition"]
    )
    t.set_random_state(seed=3)
    same = f"{paired_tifs.target_dir}/img_002.tif"
    moved = 0
    reference = paired_transforms(["target"], patch_size=(24, 20), output_keys=["target"])({"target": same})
    for _ in range(6):
        a, b = t({"target": same, "condition": same})
        torch.testing.assert_close(a, b)
        moved += int(not torch.allclose(a, reference))
    assert moved > 0  # the augmentation did something


def test_store_and_folder_give_the_same_tensor(paired_tifs, paired_store):
    from radiobject_adapter import volume_address

    folder = paired_transforms(["image"], patch_size=16, output_keys=["image"])(
        {"image": f"{paired_tifs.target_dir}/img_004.tif"}
    )
    store = paired_transforms(["image"], patch_size=16, reader=STORE_READER, output_keys=["image"])(
        {"image": volume_address(paired_store, "edente", "img_004")}
    )
    torch.testing.assert_close(folder, store)
