"""Fixtures of the slice-model search tests (Optuna and Ray Tune)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def tiny_overrides() -> dict[str, Any]:
    """Bundle overrides for a tiny network on 32² slices: a trial's epochs take seconds on a CPU."""
    return {
        "slice_size": [32, 32],
        "network_def#channels": [8, 16],
        "network_def#strides": [2],
        "network_def#num_res_units": 1,
        "num_workers": 0,
        "batch_size": 8,
        "bn_recalibration_batches": 2,
        "val_fraction": 0.25,
        "cache_rate": 0.0,
    }
