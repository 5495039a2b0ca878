"""The window benchmark's large synthetic CTs and settings."""

from __future__ import annotations

import numpy as np

from benchmarks.annotator_window import large_ct, parse_setting


def test_large_ct_has_demo_sized_structures_at_the_demo_density():
    image, label = large_ct((96, 96, 64), n_classes=3, seed=0)
    assert image.shape == label.shape == (96, 96, 64) and image.dtype == np.float32
    assert set(np.unique(label)) <= {0, 1, 2, 3} and len(np.unique(label)) > 2
    assert parse_setting("128x128x160:0") == ([128, 128, 160], 0.0) and parse_setting("48") == ([48] * 3, 0.25)
