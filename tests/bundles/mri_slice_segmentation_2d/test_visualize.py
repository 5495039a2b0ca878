from __future__ import annotations

import pytest
import torch

from bundles.mri_slice_segmentation_2d.scripts.visualize import middle_slice, middle_slice_pair, middle_slice_prediction


def test_the_middle_axial_slice_is_shown():
    volume = torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 4, 4, 5)
    assert torch.equal(middle_slice(volume), torch.full((1, 4, 4), 2.0))
    assert middle_slice(torch.zeros(1, 4, 4)).shape == (1, 4, 4)


def test_pairs_and_predictions_from_decollated_validation_batches():
    label = torch.zeros(1, 4, 4, 6)
    label[..., 3] = 1
    batch = [{"image": torch.randn(1, 4, 4, 6), "label": label}]
    images, labels = middle_slice_pair(batch)
    assert images[0].shape == (1, 4, 4) and torch.equal(labels[0], torch.ones(1, 4, 4))
    onehot = torch.cat([1 - label, label])
    assert torch.equal(middle_slice_prediction([{"pred": onehot}])[0], torch.ones(1, 4, 4))


def test_collated_batches_work_too():
    images, labels = middle_slice_pair({"image": torch.zeros(2, 1, 4, 4, 6), "label": torch.zeros(2, 1, 4, 4, 6)})
    assert len(images) == 2 and labels[1].shape == (1, 4, 4)
    with pytest.raises(TypeError, match="batch dictionary"):
        middle_slice_pair(3)
