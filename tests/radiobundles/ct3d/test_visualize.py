"""Slice panels: image / ground truth / prediction at the slice with most foreground."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.utils import one_hot

from radiobundles.ct3d.visualize import PALETTE, best_slice, label_map, slice_panel


def volumes():
    image = np.zeros((10, 8, 6), dtype=np.float32)
    label = np.zeros((10, 8, 6), dtype=np.int64)
    label[2:5, 2:5, 4] = 2
    label[3, 3, 1] = 1
    return image, label


def test_best_slice_has_the_most_foreground_and_defaults_to_the_middle():
    _, label = volumes()
    assert best_slice(label, axis=2) == 4
    assert best_slice(np.zeros_like(label), axis=2) == 3


def test_one_hot_channels_turn_back_into_a_label_map():
    _, label = volumes()
    channels = one_hot(torch.as_tensor(label)[None, None], 3)[0]
    assert np.array_equal(label_map(channels), label)
    assert np.array_equal(label_map(label[None]), label)


def test_panel_shows_three_views_with_class_colours():
    image, label = volumes()
    panel = slice_panel(image, label, np.zeros_like(label), gap=2)
    assert panel.shape == (8, 3 * 10 + 2 * 2, 3) and panel.dtype == np.uint8
    truth = panel[:, 12:22]
    assert (truth == (PALETTE[2] * 0.5).astype(np.uint8)).all(axis=-1).sum() == 9  # 3 x 3 class-2 pixels, half tint
    assert panel[:, 24:].max() == 0  # empty prediction on a black image


def test_mismatched_shapes_are_refused():
    image, label = volumes()
    with pytest.raises(ValueError, match="must share a shape"):
        slice_panel(image, label, label[:5])
