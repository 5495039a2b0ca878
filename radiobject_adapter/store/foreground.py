"""Foreground index: where each class of a label volume lies, stored with the volume.

Label-driven patch sampling (as MONAI's ``RandCropByPosNegLabeld`` and
``RandCropByLabelClassesd`` do) needs voxel locations per class. Reading the whole mask
for every sample would cost more than the patch itself, so ingest stores, in the label
array's metadata, up to ``max_per_class`` voxel coordinates per class (all of them when a
class is smaller: a structure of a few voxels is always found) plus the true counts.

This module is the index itself (no store access). That the index a reader uses describes
the voxels it reads is kept by :mod:`radiobject_adapter.store.labels` (label writes and
:func:`~radiobject_adapter.store.labels.ensure_foreground_index`).

Example:
    >>> index = ForegroundIndex.compute(label_array)
    >>> index.sample_center(rng, pos=1, neg=1)       # (x, y, z)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FOREGROUND_KEYS", "ForegroundIndex"]

INDEX_KEY = "foreground_index"
COUNTS_KEY = "foreground_counts"
VERSION_KEY = "foreground_index_version"
# the fragment an index built after the fact describes: another process may save a newer
# version of the label while the index is computed, and a reader must then not trust it
FRAGMENT_KEY = "foreground_fragment_ts"
FOREGROUND_KEYS = (INDEX_KEY, COUNTS_KEY, VERSION_KEY, FRAGMENT_KEY)
INDEX_VERSION = 1
DEFAULT_MAX_PER_CLASS = 4096


@dataclass(frozen=True)
class ForegroundIndex:
    """Voxel coordinates per class (``coords[c]`` is ``(n, 3)`` int32) and true voxel counts."""

    coords: Mapping[int, np.ndarray]
    counts: Mapping[int, int]

    @classmethod
    def compute(cls, label: np.ndarray, max_per_class: int = DEFAULT_MAX_PER_CLASS, seed: int = 0) -> ForegroundIndex:
        """Index ``label`` (3D integer array); background (0) is indexed like any class."""
        rng = np.random.default_rng(seed)
        flat = np.asarray(label).ravel()
        counts = np.bincount(flat.astype(np.int64, copy=False)) if flat.size else np.zeros(1, np.int64)
        coords: dict[int, np.ndarray] = {}
        for c in np.flatnonzero(counts):
            n = int(counts[c])
            if c == 0 and n > 4 * max_per_class:
                # background is most of the volume: rejection-sample it instead of listing it
                picks = rng.integers(0, flat.size, size=4 * max_per_class)
                where = picks[flat[picks] == 0][:max_per_class]
            else:
                where = np.flatnonzero(flat == c)
                if n > max_per_class:
                    where = np.sort(rng.choice(where, size=max_per_class, replace=False))
            coords[int(c)] = np.stack(np.unravel_index(where, label.shape), axis=1).astype(np.int32)
        return cls(coords, {int(c): int(counts[c]) for c in np.flatnonzero(counts)})

    @property
    def classes(self) -> list[int]:
        return sorted(self.coords)

    @property
    def foreground_classes(self) -> list[int]:
        return [c for c in self.classes if c != 0 and len(self.coords[c])]

    def to_metadata(self, fragment_ts: int | None = None) -> dict[str, Any]:
        """Metadata entries; ``fragment_ts``: the timestamp of the fragment the index was
        computed from, when it is written apart from the voxels (see :func:`ensure_foreground_index`)."""
        rows = [np.column_stack([np.full(len(v), c, np.int32), v]) for c, v in sorted(self.coords.items())]
        table = np.concatenate(rows) if rows else np.zeros((0, 4), np.int32)
        meta: dict[str, Any] = {
            INDEX_KEY: np.ascontiguousarray(table, dtype=np.int32).ravel(),
            COUNTS_KEY: json.dumps({str(c): n for c, n in self.counts.items()}),
            VERSION_KEY: str(INDEX_VERSION),
        }
        if fragment_ts is not None:
            meta[FRAGMENT_KEY] = str(int(fragment_ts))
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> ForegroundIndex | None:
        if INDEX_KEY not in meta or COUNTS_KEY not in meta:
            return None
        table = np.asarray(meta[INDEX_KEY], dtype=np.int32).reshape(-1, 4)
        coords = {int(c): table[table[:, 0] == c, 1:] for c in np.unique(table[:, 0])}
        counts = {int(k): int(v) for k, v in json.loads(str(meta[COUNTS_KEY])).items()}
        return cls(coords, counts)

    def sample_center(
        self,
        rng: np.random.RandomState | np.random.Generator,
        pos: float = 1.0,
        neg: float = 1.0,
        class_ratios: Sequence[float] | None = None,
    ) -> tuple[tuple[int, int, int], int]:
        """A voxel to centre a patch on, and the class it was drawn from.

        Args:
            pos / neg: foreground vs background odds (``RandCropByPosNegLabeld``); foreground
                voxels are pooled across classes in proportion to their true counts.
            class_ratios: per-class odds, background first (``RandCropByLabelClassesd``);
                overrides ``pos``/``neg``. Classes absent from the volume are skipped.
        """
        if class_ratios is not None:
            weights = np.array([r if len(self.coords.get(c, ())) else 0.0 for c, r in enumerate(class_ratios)], float)
            if weights.sum() <= 0:
                raise ValueError(f"none of the classes with a ratio > 0 occurs in this label ({self.classes})")
            cls_ = int(rng.choice(len(weights), p=weights / weights.sum()))
        else:
            fg = self.foreground_classes
            has_bg = len(self.coords.get(0, ())) > 0
            p_pos = pos / (pos + neg) if (pos + neg) > 0 else 0.0
            if fg and (not has_bg or rng.random() < p_pos):
                sizes = np.array([self.counts[c] for c in fg], float)
                cls_ = int(fg[int(rng.choice(len(fg), p=sizes / sizes.sum()))])
            elif has_bg:
                cls_ = 0
            else:
                raise ValueError("label index is empty")
        pool = self.coords[cls_]
        pick = rng.randint(len(pool)) if hasattr(rng, "randint") else rng.integers(len(pool))  # RandomState | Generator
        x, y, z = (int(v) for v in pool[int(pick)])
        return (x, y, z), cls_
