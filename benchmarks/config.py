"""What each benchmark mode runs: data sets, repeats, time budgets.

``quick`` (``make bench-quick``) keeps the 512×512×160 size so that the ratios mean the same
thing as in ``full``, with fewer subjects and shorter timing windows. ``tiny`` exists for the
smoke test only (seconds, numbers meaningless).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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


FULL = BenchConfig(
    mode="full",
    datasets=(DataSpec("large", 10, (512, 512, 160)), DataSpec("small", 20, (128, 128, 96))),
    repeats=3,
    batches_per_repeat=25,
    repeat_budget_s=10.0,
    micro_reads=300,
    micro_slow_reads=5,
    contender_timeout_s=900.0,
    levers=True,
)

QUICK = BenchConfig(
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
    skip_loaders=("radiobject-axial",),  # its reads are in the micro benchmarks; full runs its loader
    contender_timeout_s=150.0,
    batch_timeout_s=10.0,
    levers=False,
)

TINY = BenchConfig(
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
)

MODES = {"full": FULL, "quick": QUICK, "tiny": TINY}
