"""Patch geometry: where a patch starts, reading it with padding, and its affine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radiobject_adapter.volume import Volume

__all__ = ["patch_affine", "read_patch", "start_around", "uniform_start"]


def _centred_pad_start(size: int, extent: int) -> int:
    # a patch longer than the axis: the volume sits in its middle, pad on both sides
    return -((size - extent) // 2)


def uniform_start(rng: np.random.RandomState, shape: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    """A uniformly random start such that the patch lies inside (or centred, if larger)."""
    return tuple(int(rng.randint(0, n - p + 1)) if n >= p else _centred_pad_start(p, n) for n, p in zip(shape, size))


def start_around(center: Sequence[int], shape: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    """The start of a patch containing ``center``, moved inside the volume where needed."""
    out = []
    for c, n, p in zip(center, shape, size):
        if n >= p:
            out.append(int(min(max(c - p // 2, 0), n - p)))
        else:
            out.append(_centred_pad_start(p, n))
    return tuple(out)


def read_patch(
    volume: Volume,
    start: Sequence[int],
    size: Sequence[int],
    pad_mode: str = "constant",
    pad_value: float = 0.0,
) -> np.ndarray:
    """Read ``size`` voxels from ``start``; parts outside the volume are padded.

    Only the part inside the volume is read from storage.
    """
    shape = volume.shape[:3]
    lo = [max(s, 0) for s in start]
    hi = [min(s + p, n) for s, p, n in zip(start, size, shape)]
    data = volume.read_box(list(zip(lo, hi)))
    if tuple(data.shape) == tuple(size):
        return data
    before = [lo_ - s for lo_, s in zip(lo, start)]
    after = [p - b - d for p, b, d in zip(size, before, data.shape)]
    widths = list(zip(before, after))
    if pad_mode == "constant":
        return np.pad(data, widths, mode="constant", constant_values=pad_value)
    return np.pad(data, widths, mode=pad_mode)


def patch_affine(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """The volume affine moved to the patch origin (spacing and direction unchanged)."""
    out = np.array(affine, dtype=np.float64, copy=True)
    out[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.asarray(start, dtype=np.float64)
    return out
