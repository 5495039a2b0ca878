"""Synthetic MRI-like volumes whose class a model must learn: lesion or none.

Every subject is a bright ellipsoid "brain" of random size and position inside a volume of
random shape and voxel spacing, with a smooth random bias field, a random global gain and
Gaussian noise, so neither the mean intensity nor the shape gives the class away. Subjects
of the positive class carry one or two hyperintense, textured lesions of random radius and
contrast at random positions; healthy subjects carry one or two *hypo*intense blobs of the
same size distribution (decoys), so "something is there" is not enough: the model has to
look at the sign of the contrast. Some lesions are faint, so the task is not solved
perfectly by a threshold. Several collections (``T1w``, ``FLAIR``) show the same anatomy
with their own noise; the lesion is brighter in ``FLAIR``.

Files: ``<root>/<collection>/<subject>.nii.gz`` and ``<root>/subjects.csv`` with
``subject_id``, the label column (default ``diagnosis``) and ``age`` (uninformative).

Example:
    >>> ds = make_classification_dataset("data", n_subjects=40, collections=("T1w", "FLAIR"))
    >>> ds.table.diagnosis.value_counts()
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd

__all__ = ["SyntheticClassificationData", "make_classification_dataset", "synthetic_subject"]

# how much brighter a lesion is than tissue in each collection (tissue intensity is 100)
LESION_CONTRAST = {"T1w": (35.0, 70.0), "FLAIR": (50.0, 100.0)}


@dataclass(frozen=True)
class SyntheticClassificationData:
    root: str
    collections: tuple[str, ...]
    subjects_csv: str
    table: pd.DataFrame

    def folder(self, collection: str) -> str:
        return os.path.join(self.root, collection)


def _ellipsoid(grid: tuple[np.ndarray, ...], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def synthetic_subject(
    shape: Sequence[int], positive: bool, collections: Sequence[str], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One subject's float32 volumes ``{collection: array}`` of ``shape``."""
    grid = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    size = np.asarray(shape, dtype=np.float32)
    brain_c = size / 2 + rng.uniform(-0.06, 0.06, 3) * size
    brain_r = size * rng.uniform(0.32, 0.42, 3)
    brain = _ellipsoid(grid, brain_c, brain_r)
    blobs = []
    for _ in range(int(rng.integers(1, 3))):
        radius = rng.uniform(0.12, 0.2) * size.min() * rng.uniform(0.8, 1.25, 3)
        offset = rng.uniform(-0.55, 0.55, 3) * (brain_r - radius)
        blobs.append((_ellipsoid(grid, brain_c + offset, radius), rng.uniform(0, 1)))
    out = {}
    for name in collections:
        lo, hi = LESION_CONTRAST.get(name, LESION_CONTRAST["T1w"])
        tissue = np.where(brain, 100.0, 5.0).astype(np.float32)
        for mask, strength in blobs:
            contrast = lo + strength * (hi - lo)
            texture = 1.0 + 0.25 * rng.standard_normal(mask.sum())
            tissue[mask] += (contrast if positive else -contrast) * texture
        bias = 1.0 + sum(rng.uniform(-0.15, 0.15) * (g / n - 0.5) for g, n in zip(grid, shape))
        gain = rng.uniform(0.7, 1.4)
        noise = rng.normal(0.0, rng.uniform(6.0, 12.0), size=tuple(shape))
        out[name] = (gain * bias * tissue + noise).astype(np.float32)
    return out


def make_classification_dataset(
    root: str,
    n_subjects: int = 40,
    collections: Sequence[str] = ("T1w",),
    class_names: tuple[str, str] = ("healthy", "lesion"),
    positive_fraction: float = 0.35,
    shape_range: Sequence[tuple[int, int]] = ((30, 40), (30, 40), (24, 34)),
    spacing_range: tuple[float, float] = (0.8, 2.0),
    label_column: str = "diagnosis",
    split_column: str | None = None,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    prefix: str = "sub",
) -> SyntheticClassificationData:
    """Write ``n_subjects`` subjects (imbalanced: ``positive_fraction`` with lesions) under ``root``.

    Args:
        split_column: also write a ``train``/``validation``/``test`` column under this name,
            stratified by class, with ``split_fractions`` (at least one subject of each class
            in validation and test).
    """
    rng = np.random.default_rng(seed)
    n_pos = max(1, round(n_subjects * positive_fraction))
    positive = np.array([True] * n_pos + [False] * (n_subjects - n_pos))
    rng.shuffle(positive)
    for name in collections:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    rows = []
    for i in range(n_subjects):
        sid = f"{prefix}_{i:03d}"
        shape = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in shape_range)
        affine = np.diag([*rng.uniform(*spacing_range, 3).round(3), 1.0])
        affine[:3, 3] = rng.uniform(-100, 100, 3)
        for name, data in synthetic_subject(shape, bool(positive[i]), collections, rng).items():
            nib.save(nib.Nifti1Image(data, affine), os.path.join(root, name, f"{sid}.nii.gz"))
        rows.append({"subject_id": sid, label_column: class_names[int(positive[i])], "age": int(rng.integers(40, 90))})
    table = pd.DataFrame(rows)
    if split_column:
        table[split_column] = ""
        for _, group in table.groupby(label_column):
            order = rng.permutation(group.index.to_numpy())
            n = len(order)
            n_val, n_test = (max(1, round(f * n)) for f in split_fractions[1:])
            table.loc[order[:n_test], split_column] = "test"
            table.loc[order[n_test : n_test + n_val], split_column] = "validation"
            table.loc[order[n_test + n_val :], split_column] = "train"
    csv = os.path.join(root, "subjects.csv")
    table.to_csv(csv, index=False)
    return SyntheticClassificationData(root, tuple(collections), csv, table)
