"""Synthetic paired dental slices (dentate / edentulous) as TIF folders, for tests and the demo.

Each pair shares one "jaw": a bone ridge (an ellipse cut by the lower image border) with a
cortical rim, on a background that is exactly zero. The dentate slice adds bright teeth
standing on the ridge; the edentulous slice has none and a slightly resorbed ridge. Both
carry independent noise inside the foreground only, as a scanner would.

Example:
    >>> ds = make_paired_tifs("data", n_pairs=8, shape=(32, 32))
    >>> ds.target_dir, ds.condition_dir, ds.names[:2]
    ('data/edente', 'data/dente', ['img_000', 'img_001'])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .io import write_tif

__all__ = ["PairedTifDataset", "make_paired_tifs", "synthetic_jaw_pair"]


@dataclass(frozen=True)
class PairedTifDataset:
    """Where :func:`make_paired_tifs` wrote its files."""

    root: str
    target: str
    condition: str
    names: list[str]

    @property
    def target_dir(self) -> str:
        return os.path.join(self.root, self.target)

    @property
    def condition_dir(self) -> str:
        return os.path.join(self.root, self.condition)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def synthetic_jaw_pair(
    shape: Sequence[int] = (64, 64), seed: int = 0, bone: float = 1200.0, tooth: float = 2800.0, noise: float = 40.0
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(edentulous, dentate)`` pair of uint16 images of ``shape`` (background exactly 0)."""
    rng = np.random.default_rng(seed)
    h, w = int(shape[0]), int(shape[1])
    cx = w * rng.uniform(0.42, 0.58)
    ridge_top = h * rng.uniform(0.45, 0.6)
    ry, rx = h - ridge_top, w * rng.uniform(0.3, 0.4)
    ridge = _ellipse((h, w), h, cx, ry, rx)
    core = _ellipse((h, w), h, cx, ry * 0.8, rx * 0.8)
    dentate = np.where(ridge, bone * 1.4, 0.0) * ~core + np.where(core, bone, 0.0)
    teeth = np.zeros((h, w), dtype=bool)
    n_teeth = int(rng.integers(1, 3))
    for i in range(n_teeth):
        tx = cx + (i - (n_teeth - 1) / 2) * rx * 0.45
        teeth |= _ellipse((h, w), ridge_top - h * 0.02, tx, h * rng.uniform(0.16, 0.22), w * rng.uniform(0.05, 0.08))
    dentate = np.where(teeth, tooth, dentate)
    resorbed = _ellipse((h, w), h, cx, ry * rng.uniform(0.8, 0.9), rx * 0.95)
    resorbed_core = _ellipse((h, w), h, cx, ry * 0.7, rx * 0.75)
    edentulous = np.where(resorbed, bone * 1.4, 0.0) * ~resorbed_core + np.where(resorbed_core, bone, 0.0)
    out = []
    for image in (edentulous, dentate):
        foreground = image > 0
        noisy = image + foreground * rng.normal(0.0, noise, size=image.shape)
        out.append(np.where(foreground, np.clip(noisy, 1, 65535), 0).astype(np.uint16))
    return out[0], out[1]


def make_paired_tifs(
    root: str,
    n_pairs: int = 8,
    shape: Sequence[int] = (64, 64),
    seed: int = 0,
    target: str = "edente",
    condition: str = "dente",
    prefix: str = "img_",
    only_target: Sequence[str] = (),
    only_condition: Sequence[str] = (),
) -> PairedTifDataset:
    """Write ``n_pairs`` synthetic pairs as ``<root>/<target>/<name>.tif`` and ``<root>/<condition>/<name>.tif``.

    Args:
        root: output folder (created).
        n_pairs: number of matched pairs, named ``<prefix>000``, ``<prefix>001``...
        shape: image size ``(H, W)``.
        seed: base seed (pair ``i`` uses ``seed + i``).
        target / condition: folder names.
        only_target / only_condition: extra names written to one folder only (to test pairing).
    """
    target_dir, condition_dir = os.path.join(root, target), os.path.join(root, condition)
    os.makedirs(target_dir, exist_ok=True)
    os.makedirs(condition_dir, exist_ok=True)
    names = [f"{prefix}{i:03d}" for i in range(n_pairs)]
    for i, name in enumerate(names):
        edentulous, dentate = synthetic_jaw_pair(shape, seed=seed + i)
        write_tif(os.path.join(target_dir, f"{name}.tif"), edentulous)
        write_tif(os.path.join(condition_dir, f"{name}.tif"), dentate)
    for j, name in enumerate(only_target):
        write_tif(os.path.join(target_dir, f"{name}.tif"), synthetic_jaw_pair(shape, seed=seed + 1000 + j)[0])
    for j, name in enumerate(only_condition):
        write_tif(os.path.join(condition_dir, f"{name}.tif"), synthetic_jaw_pair(shape, seed=seed + 2000 + j)[1])
    return PairedTifDataset(root=root, target=target, condition=condition, names=names)
