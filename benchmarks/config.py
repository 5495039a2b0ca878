"""What each benchmark mode runs: data sets, repeats, time budgets.

The modes are declared in ``configs/benchmarks.yaml``; :class:`BenchConfig` holds the defaults.
``quick`` (``make bench-quick``) keeps the 512×512×160 size so that the ratios mean the same
thing as in ``full``, with fewer subjects and shorter timing windows. ``tiny`` exists for the
smoke test only (seconds, numbers meaningless).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from radiobundles.settings import load_settings

PATCH = (64, 64, 64)
BATCH = 4


@dataclass(frozen=True)
class DataSpec:
    """One synthetic data set: ``n_subjects`` CT-like int16 volumes of ``shape`` plus labels."""

    name: str
    n_subjects: int
    shape: tuple[int, int, int]
    seed: int = 0

    @property
    def key(self) -> str:
        x, y, z = self.shape
        return f"{self.name}_{self.n_subjects}x{x}x{y}x{z}_s{self.seed}"


@dataclass(frozen=True)
class BenchConfig:
    mode: str
    datasets: tuple[DataSpec, ...]
    workers: tuple[int, ...] = (0, 2)
    repeats: int = 3
    warmup_batches: int = 2
    batches_per_repeat: int = 15  # upper bound; the time budget below usually ends a repeat first
    min_batches_per_repeat: int = 3
    repeat_budget_s: float = 6.0  # stop a repeat after this long (slow contenders)
    patches_per_volume: int = 16  # dataset length = subjects × this (epochs wrap around)
    micro_reads: int = 200  # random patch reads per layout (interleaved)
    micro_slow_reads: int = 5  # full-volume reads / reads of slow layouts
    contender_timeout_s: float = 600.0  # a contender's whole subprocess
    batch_timeout_s: float = 60.0  # DataLoader(timeout=...) for loaders that may hang
    levers: bool = True
    repeats_with_workers: int = 99  # timed windows with worker processes (each starts a loader)
    slow_loader_repeats: int = 99  # timed windows for slow loaders (MONAI: seconds per batch)
    skip_loaders: tuple[str, ...] = ()  # contenders measured in the micro benchmarks only
    patch: tuple[int, int, int] = PATCH
    batch_size: int = BATCH
    loader_sets: tuple[str, ...] = ("large", "small")
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def dataset(self, name: str) -> DataSpec:
        return next(d for d in self.datasets if d.name == name)


def mode_from_settings(name: str, spec: dict[str, Any]) -> BenchConfig:
    """A :class:`BenchConfig` from one mode of ``configs/benchmarks.yaml`` (lists become tuples)."""
    spec = dict(spec)
    known = {f.name for f in fields(BenchConfig)} - {"mode"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"configs/benchmarks.yaml mode {name!r}: unknown settings {unknown}; known: {sorted(known)}")
    datasets = tuple(
        DataSpec(d["name"], int(d["n_subjects"]), tuple(int(n) for n in d["shape"]), int(d.get("seed", 0)))
        for d in spec.pop("datasets")
    )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    return BenchConfig(mode=name, datasets=datasets, **values)


MODES = {name: mode_from_settings(name, spec) for name, spec in load_settings("benchmarks.yaml")["modes"].items()}
FULL, QUICK, TINY = MODES["full"], MODES["quick"], MODES["tiny"]
