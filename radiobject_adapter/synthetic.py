"""Small synthetic CT-like datasets for the demo, the tests and the benchmarks.

Volumes are built on MONAI's ``create_test_image_3d`` (random spheres, one class each),
placed inside a soft-tissue body ellipsoid surrounded by air, in Hounsfield-like int16
values, with varying shapes, spacings and (optionally) oblique affines. Files follow
nnU-Net's names: ``imagesTr/<id>_0000.nii.gz`` and ``labelsTr/<id>.nii.gz``.

Example:
    >>> ds = make_ct_dataset("data", n_subjects=4, shape_range=((48, 64), (48, 64), (32, 40)))
    >>> ds.images[0], ds.labels[0], ds.subject_table
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
from monai.data import create_test_image_3d

__all__ = ["SyntheticDataset", "ct_like_volume", "make_ct_dataset", "random_affine"]

# Mean HU of each class (0 = body soft tissue); distinct enough to be learnable in minutes.
CLASS_HU = (40, 180, 320, 460, 600)


@dataclass(frozen=True)
class SyntheticDataset:
    root: str
    images: list[str]
    labels: list[str]
    subject_ids: list[str]
    subject_table: str

    @property
    def images_dir(self) -> str:
        return os.path.join(self.root, "imagesTr")

    @property
    def labels_dir(self) -> str:
        return os.path.join(self.root, "labelsTr")

    def first(self, n: int, image: str = "CT", label: str = "seg") -> dict[str, list[str]]:
        """Image and label files of the ``n`` first subjects by id, keyed by collection name
        as :func:`~radiobject_adapter.ingest_niftis` takes them (a small store from a larger set).

        Example:
            >>> ds = make_ct_dataset("data", n_subjects=8)
            >>> ingest_niftis("store", ds.first(3), obs_meta=ds.subject_table)
        """
        picked = sorted(range(len(self.subject_ids)), key=self.subject_ids.__getitem__)[:n]
        return {image: [self.images[i] for i in picked], label: [self.labels[i] for i in picked]}


def random_affine(spacing: Sequence[float], rng: np.random.Generator, oblique: bool = False) -> np.ndarray:
    """A voxel-to-RAS affine with ``spacing``; ``oblique`` adds a random small rotation."""
    rot = np.eye(3)
    if oblique:
        angles = rng.uniform(-0.35, 0.35, size=3)
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        rot = rz @ ry @ rx
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-120, 120, size=3)
    return affine


def ct_like_volume(
    shape: Sequence[int],
    n_classes: int = 2,
    n_objects: int = 6,
    seed: int = 0,
    noise_hu: float = 20.0,
    radius: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An int16 CT-like image and its uint8 label of ``shape``.

    ``radius``: the spheres' (min, max) radius in voxels; by default they scale with the volume
    (max a sixth of its smallest edge, min half of that).
    """
    rng = np.random.default_rng(seed)
    x, y, z = (int(s) for s in shape)
    r_max = max(3, min(x, y, z) // 6) if radius is None else int(radius[1])
    r_min = max(2, r_max // 2) if radius is None else int(radius[0])
    _, seg = create_test_image_3d(
        x,
        y,
        z,
        num_objs=n_objects,
        rad_max=r_max,
        rad_min=r_min,
        noise_max=0.0,
        num_seg_classes=n_classes,
        random_state=np.random.RandomState(seed),
    )
    label = np.rint(seg).astype(np.uint8)
    gx, gy, gz = np.meshgrid(*(np.linspace(-1, 1, n) for n in (x, y, z)), indexing="ij")
    body = (gx / 0.95) ** 2 + (gy / 0.85) ** 2 + (gz / 1.2) ** 2 <= 1.0
    image = np.full(shape, -1000.0)
    image[body] = CLASS_HU[0]
    for k in range(1, n_classes + 1):
        image[label == k] = CLASS_HU[k % len(CLASS_HU)]
    label[~body] = 0
    image += rng.normal(0, noise_hu, size=image.shape)
    return np.clip(image, -1024, 3071).astype(np.int16), label


def make_ct_dataset(
    root: str,
    n_subjects: int = 8,
    shape_range: Sequence[tuple[int, int]] = ((48, 80), (48, 80), (32, 56)),
    spacing_range: tuple[float, float] = (0.7, 2.5),
    n_classes: int = 2,
    oblique: bool = False,
    seed: int = 0,
    prefix: str = "case",
    compress: bool = True,
) -> SyntheticDataset:
    """Write ``n_subjects`` image/label NIfTI pairs plus ``subjects.csv`` under ``root``."""
    rng = np.random.default_rng(seed)
    img_dir, lbl_dir = os.path.join(root, "imagesTr"), os.path.join(root, "labelsTr")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lbl_dir, exist_ok=True)
    ext = ".nii.gz" if compress else ".nii"
    images, labels, ids, rows = [], [], [], []
    for i in range(n_subjects):
        sid = f"{prefix}_{i:03d}"
        shape = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in shape_range)
        spacing = rng.uniform(*spacing_range, size=3).round(3)
        affine = random_affine(spacing, rng, oblique)
        image, label = ct_like_volume(shape, n_classes=n_classes, seed=seed * 1000 + i)
        img_path = os.path.join(img_dir, f"{sid}_0000{ext}")
        lbl_path = os.path.join(lbl_dir, f"{sid}{ext}")
        for data, path in ((image, img_path), (label, lbl_path)):
            nii = nib.Nifti1Image(data, affine)
            nii.header.set_xyzt_units("mm", "sec")
            nib.save(nii, path)
        images.append(img_path)
        labels.append(lbl_path)
        ids.append(sid)
        rows.append({"subject_id": sid, "diagnosis": ("tumor", "healthy")[i % 2], "age": int(rng.integers(30, 80))})
    table = os.path.join(root, "subjects.csv")
    pd.DataFrame(rows).to_csv(table, index=False)
    return SyntheticDataset(root, images, labels, ids, table)
