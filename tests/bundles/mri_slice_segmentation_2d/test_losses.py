from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss

from bundles.mri_slice_segmentation_2d.scripts.losses import LOSSES, CrossEntropySegLoss, segmentation_loss


@pytest.mark.parametrize("name", LOSSES)
def test_every_named_loss_trains_on_logits_and_integer_labels(name):
    pred = torch.randn(2, 3, 8, 8, requires_grad=True)
    label = torch.randint(0, 3, (2, 1, 8, 8)).float()
    loss = segmentation_loss(name)(pred, label)
    loss.backward()
    assert loss.ndim == 0 and pred.grad is not None


def test_names_map_to_the_expected_losses():
    assert isinstance(segmentation_loss("dice"), DiceLoss)
    assert isinstance(segmentation_loss("dice_ce"), DiceCELoss)
    assert isinstance(segmentation_loss("cross_entropy"), CrossEntropySegLoss)


def test_dice_is_computed_over_the_whole_slice_batch():
    # per-slice Dice would score an empty prediction on an empty slice as perfect
    label = torch.zeros(2, 1, 4, 4)
    label[0, 0, :2] = 1  # foreground only in the first slice
    empty_prediction = torch.stack([torch.full((4, 4), 10.0), torch.full((4, 4), -10.0)])[None].repeat(2, 1, 1, 1)
    batch_loss = segmentation_loss("dice", include_background=False)(empty_prediction, label)
    per_slice = segmentation_loss("dice", include_background=False, batch=False)(empty_prediction, label)
    assert batch_loss > 0.99 and per_slice < 0.51


def test_cross_entropy_matches_torch():
    pred, label = torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 1, 4, 4))
    expected = torch.nn.functional.cross_entropy(pred, label[:, 0])
    assert torch.allclose(segmentation_loss("cross_entropy")(pred, label.float()), expected)


def test_unknown_loss_lists_the_choices():
    with pytest.raises(ValueError, match="dice, cross_entropy, dice_ce"):
        segmentation_loss("focal")
