"""``DatasetConfig`` and ``LoadingMode``: what each dataset item is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = ["PLANES", "DatasetConfig", "LoadingMode"]

PLANES = {"sagittal": 0, "coronal": 1, "axial": 2}


class LoadingMode(str, Enum):
    """What one item of a dataset is: a whole volume, a 3D patch, or one 2D slice."""

    FULL_VOLUME = "full_volume"
    PATCH = "patch"
    SLICE_2D = "slice_2d"


@dataclass(frozen=True)
class DatasetConfig:
    """How a dataset cuts volumes into items.

    Args:
        loading_mode: :class:`LoadingMode` (or its string value).
        patch_size: ``(x, y, z)`` for ``PATCH`` (required there).
        patches_per_volume: items drawn from each volume per epoch (``PATCH``).
        slice_axis: plane for ``SLICE_2D``: 0/``"sagittal"``, 1/``"coronal"``, 2/``"axial"``.
        pad_mode / pad_value: a patch larger than the volume along an axis is padded, never
            truncated: ``"constant"`` with ``pad_value`` (MONAI's default, 0), or ``"edge"``
            / ``"reflect"`` / ``"minimum"`` (``numpy.pad`` modes). Labels are padded with 0.
        image_dtype: dtype of returned images (``"float32"``, as MONAI's ``LoadImage``);
            ``None`` keeps the stored dtype.
        modalities: names of the collections a :class:`VolumeCollectionDataset` stacks as
            channels, in order (``None``: all those given, or all of a ``RadiObject``).
        label_column: obs / subject-table column with per-volume labels (classification),
            used by :class:`VolumeCollectionDataset` when no ``labels`` are given.
        seed: seeds the dataset's sampler (else drawn from NumPy's global RNG, so MONAI's
            ``set_determinism`` makes runs reproducible).
        read_threads: threads that read the items of one batch inside each loader process
            (main or DataLoader worker). 2 reads 64³ patches ~1.5× faster with 0 workers on
            2 cores (benchmarks/README.md); 1 reads one item at a time. Items are the same
            either way: positions and transforms stay in the calling thread.

    Example:
        >>> DatasetConfig(loading_mode=LoadingMode.PATCH, patch_size=(64, 64, 64), patches_per_volume=4)
    """

    loading_mode: LoadingMode = LoadingMode.FULL_VOLUME
    patch_size: tuple[int, int, int] | None = None
    patches_per_volume: int = 1
    slice_axis: int | str = 2
    pad_mode: str = "constant"
    pad_value: float = 0.0
    image_dtype: str | None = "float32"
    modalities: Sequence[str] | None = None
    label_column: str | None = None
    seed: int | None = None
    read_threads: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "loading_mode", LoadingMode(self.loading_mode))
        if self.loading_mode is LoadingMode.PATCH and self.patch_size is None:
            raise ValueError(
                "LoadingMode.PATCH needs patch_size (patch_size required), e.g. DatasetConfig(..., patch_size=(64, 64, 64))"
            )
        if self.patch_size is not None:
            size = tuple(int(p) for p in self.patch_size)
            if len(size) != 3 or min(size) < 1:
                raise ValueError(f"patch_size must be three positive ints, got {self.patch_size!r}")
            object.__setattr__(self, "patch_size", size)
        if int(self.read_threads) < 1:
            raise ValueError(f"read_threads must be >= 1, got {self.read_threads}")
        object.__setattr__(self, "read_threads", int(self.read_threads))
        if self.patches_per_volume < 1:
            raise ValueError(f"patches_per_volume must be >= 1, got {self.patches_per_volume}")
        axis = PLANES.get(self.slice_axis, self.slice_axis) if isinstance(self.slice_axis, str) else self.slice_axis
        if axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1, 2 or one of {list(PLANES)}, got {self.slice_axis!r}")
        object.__setattr__(self, "slice_axis", int(axis))
        if self.pad_mode not in ("constant", "edge", "reflect", "minimum", "symmetric"):
            raise ValueError(f"unsupported pad_mode {self.pad_mode!r}")
