from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from bundles.mri_slice_segmentation_2d.scripts.collate import SlicePrepareBatch, slices_to_volumes, volumes_to_slices


def test_volume_batch_becomes_slice_batch_in_volume_major_order():
    x = torch.arange(2 * 1 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 1, 3, 4, 5)
    slices = volumes_to_slices(x)
    assert slices.shape == (10, 1, 3, 4)
    for b in range(2):
        for k in range(5):
            assert torch.equal(slices[b * 5 + k], x[b, :, :, :, k])


def test_slices_to_volumes_inverts_volumes_to_slices():
    x = torch.randn(3, 2, 6, 7, 4)
    assert torch.equal(slices_to_volumes(volumes_to_slices(x), batch_size=3), x)


def test_shapes_that_do_not_fit_are_rejected():
    with pytest.raises(ValueError, match=r"\[B, C, H, W, D\]"):
        volumes_to_slices(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="do not split into 3 volumes"):
        slices_to_volumes(torch.zeros(10, 1, 4, 4), batch_size=3)


def test_prepare_batch_flattens_volumes_and_passes_slices_through():
    prepare = SlicePrepareBatch()
    volumes = {"image": MetaTensor(torch.randn(2, 1, 8, 8, 3)), "label": torch.ones(2, 1, 8, 8, 3)}
    image, label = prepare(volumes, torch.device("cpu"))
    assert image.shape == label.shape == (6, 1, 8, 8)
    assert not isinstance(image, MetaTensor)
    slices = {"image": torch.randn(4, 1, 8, 8), "label": torch.zeros(4, 1, 8, 8)}
    image, label = prepare(slices, "cpu")
    assert torch.equal(image, slices["image"])


def test_labels_outside_num_classes_fail_with_the_fix():
    prepare = SlicePrepareBatch(num_classes=2)
    batch = {"image": torch.zeros(1, 1, 4, 4), "label": torch.full((1, 1, 4, 4), 2.0)}
    with pytest.raises(ValueError, match="set num_classes to 3"):
        prepare(batch, "cpu")


def test_a_batch_without_labels_gives_none():
    image, label = SlicePrepareBatch()({"image": torch.zeros(1, 1, 4, 4, 2)}, "cpu")
    assert image.shape == (2, 1, 4, 4) and label is None
