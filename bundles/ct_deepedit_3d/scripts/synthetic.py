"""Small CT-like volumes with one clear and one faint structure (tests, benchmark, smoke runs).

``structure_1`` is a bright sphere an automatic segmentation finds; ``structure_2`` is a
sphere only ``faint_hu`` above the soft tissue around it, under noise of ``noise_hu``: an
automatic pass misses it, clicks on it are what finds it. Files follow nnU-Net's names
(``imagesTr/<id>_0000.nii.gz``, ``labelsTr/<id>.nii.gz``), int16 HU images and uint8 labels.

Example:
    >>> ids = make_click_dataset("data", n_subjects=8, shape=(40, 40, 32))
    >>> sorted(os.listdir("data"))
    ['imagesTr', 'labelsTr']
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np

__all__ = ["click_volume", "make_click_dataset"]

TISSUE_HU, BRIGHT_HU = 40, 320


def _sphere(shape: Sequence[int], centre: np.ndarray, radius: float) -> np.ndarray:
    grid = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def click_volume(
    shape: Sequence[int], seed: int = 0, faint_hu: float = 20.0, noise_hu: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """An int16 image and uint8 label (0 background, 1 bright structure, 2 faint structure)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    dims = np.asarray(shape, dtype=float)
    gx, gy, gz = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = (gx / 0.95) ** 2 + (gy / 0.9) ** 2 + (gz / 1.1) ** 2 <= 1.0
    image = np.where(body, float(TISSUE_HU), -1000.0)
    label = np.zeros(shape, np.uint8)
    r = float(min(shape)) / 7
    centres = []
    for value in (1, 2):
        for _ in range(100):  # apart from each other, inside the body
            centre = rng.uniform(0.3, 0.7, size=3) * dims
            if all(np.linalg.norm(centre - c) > 2.6 * r for c in centres):
                break
        centres.append(centre)
        radius = r * rng.uniform(0.8, 1.2)
        sphere = _sphere(shape, centre, radius) & body
        label[sphere] = value
        image[sphere] = BRIGHT_HU if value == 1 else TISSUE_HU + faint_hu
    image += rng.normal(0, noise_hu, size=shape)
    return np.clip(image, -1024, 3071).astype(np.int16), label


def make_click_dataset(
    root: str,
    n_subjects: int = 8,
    shape: Sequence[int] = (40, 40, 32),
    spacing: Sequence[float] = (1.5, 1.5, 2.0),
    seed: int = 0,
    prefix: str = "case",
    faint_hu: float = 20.0,
) -> list[str]:
    """Write ``n_subjects`` image/label pairs under ``root``; returns the subject ids."""
    images, labels = os.path.join(root, "imagesTr"), os.path.join(root, "labelsTr")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    affine = np.diag([*(float(s) for s in spacing), 1.0])
    ids = []
    for i in range(n_subjects):
        sid = f"{prefix}_{i:03d}"
        image, label = click_volume(shape, seed=seed * 1000 + i, faint_hu=faint_hu)
        nib.save(nib.Nifti1Image(image, affine), os.path.join(images, f"{sid}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), os.path.join(labels, f"{sid}.nii.gz"))
        ids.append(sid)
    return ids
