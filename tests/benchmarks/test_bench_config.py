"""The benchmark modes read from configs/benchmarks.yaml equal the Python literals they replace."""

from __future__ import annotations

import pytest

from benchmarks.config import MODES, BenchConfig, DataSpec, mode_from_settings

# benchmarks/config.py at 53db1bc, before the modes moved to configs/
FORMER = {
    "full": BenchConfig(
        mode="full",
        datasets=(DataSpec("large", 10, (512, 512, 160)), DataSpec("small", 20, (128, 128, 96))),
        repeats=3,
        batches_per_repeat=25,
        repeat_budget_s=10.0,
        micro_reads=300,
        micro_slow_reads=5,
        contender_timeout_s=900.0,
        levers=True,
    ),
    "quick": BenchConfig(
        mode="quick",
        datasets=(DataSpec("large", 3, (512, 512, 160)), DataSpec("small", 6, (128, 128, 96))),
        repeats=2,
        warmup_batches=1,
        batches_per_repeat=12,
        min_batches_per_repeat=2,
        repeat_budget_s=2.5,
        patches_per_volume=16,
        micro_reads=100,
        micro_slow_reads=2,
        repeats_with_workers=1,
        slow_loader_repeats=1,
        skip_loaders=("radiobject-axial",),
        contender_timeout_s=150.0,
        batch_timeout_s=10.0,
        levers=False,
    ),
    "tiny": BenchConfig(
        mode="tiny",
        datasets=(DataSpec("large", 2, (80, 80, 72)),),
        workers=(0,),
        repeats=1,
        warmup_batches=1,
        batches_per_repeat=2,
        min_batches_per_repeat=1,
        repeat_budget_s=1.0,
        patches_per_volume=4,
        micro_reads=8,
        micro_slow_reads=1,
        contender_timeout_s=60.0,
        batch_timeout_s=20.0,
        levers=False,
        loader_sets=("large",),
    ),
}


@pytest.mark.parametrize("mode", sorted(FORMER))
def test_modes_from_configs_equal_the_former_literals(mode: str) -> None:
    assert MODES[mode] == FORMER[mode]
    assert MODES[mode].to_json() == FORMER[mode].to_json()  # what a results file records


def test_a_misspelt_setting_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown settings \['repeat'\]"):
        mode_from_settings("quick", {"datasets": [], "repeat": 2})
