"""Synthetic CT-like volumes and every on-disk layout the contenders read.

The recipe is that of :func:`radiobject_adapter.synthetic.ct_like_volume` (soft-tissue body
ellipsoid in air, spherical objects of two classes with class-specific HU, Gaussian noise of
20 HU everywhere, int16 image, uint8 label), vectorised in float32 so that a 512×512×160
volume takes about a second instead of ten (the project's helper builds float64 meshgrids).

Layouts written per data set (all from the same arrays):

* ``nii_gz/``  ``imagesTr/<id>_0000.nii.gz`` + ``labelsTr/<id>.nii.gz`` (nibabel's default
  gzip level, as ``nib.save`` writes them): the seeds' baseline input;
* ``nii/``     the same, uncompressed ``.nii``;

Every other layout is converted from ``nii_gz/`` by its contender module (timed, as ingest):
``npy/`` (``<id>.npy`` + ``<id>_seg.npy``), ``b2nd/`` (nnU-Net v2's blosc2 layout), our
stores, radiobject's stores, MONAI's persistent cache; all are recorded in one manifest. Everything lands under ``benchmarks/data/<key>/`` and is reused
while the manifest says it is complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.config import DataSpec

CLASS_HU = (40, 180, 320, 460, 600)  # same as radiobject_adapter.synthetic.CLASS_HU
SPACING = (0.8, 0.8, 2.0)


def ct_like(shape: tuple[int, int, int], seed: int, n_objects: int = 6, n_classes: int = 2, noise_hu: float = 20.0):
    """An int16 CT-like image and its uint8 label (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x, y, z = shape
    gx = np.linspace(-1, 1, x, dtype=np.float32)[:, None]
    gy = np.linspace(-1, 1, y, dtype=np.float32)[None, :]
    gz = np.linspace(-1, 1, z, dtype=np.float32)
    r2 = (gx / 0.95) ** 2 + (gy / 0.85) ** 2  # (x, y)
    body = (r2[:, :, None] + ((gz / 1.2) ** 2)[None, None, :]) <= 1.0
    label = np.zeros(shape, np.uint8)
    r_max = max(3, min(shape) // 6)
    r_min = max(2, r_max // 2)
    for k in range(n_objects):
        rad = int(rng.integers(r_min, r_max + 1))
        c = [int(rng.integers(rad, n - rad)) if n > 2 * rad else n // 2 for n in shape]
        lo = [max(0, ci - rad) for ci in c]
        hi = [min(n, ci + rad + 1) for ci, n in zip(c, shape)]
        ax = [np.arange(a, b) - ci for a, b, ci in zip(lo, hi, c)]
        ball = (ax[0][:, None, None] ** 2 + ax[1][None, :, None] ** 2 + ax[2][None, None, :] ** 2) <= rad * rad
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        label[box][ball] = 1 + k % n_classes
    label[~body] = 0
    image = rng.standard_normal(shape, dtype=np.float32)
    image *= noise_hu
    base = np.where(body, np.float32(CLASS_HU[0]), np.float32(-1000.0))
    for k in range(1, n_classes + 1):
        base[label == k] = CLASS_HU[k % len(CLASS_HU)]
    image += base
    np.rint(image, out=image)
    np.clip(image, -1024, 3071, out=image)
    return image.astype(np.int16), label


def affine() -> np.ndarray:
    a = np.diag([*SPACING, 1.0])
    a[:3, 3] = (-200.0, -200.0, -150.0)
    return a


def subject_ids(spec: DataSpec) -> list[str]:
    return [f"case_{i:03d}" for i in range(spec.n_subjects)]


def dir_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            fp = os.path.join(root, f)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total


class DataSet:
    """The files of one :class:`DataSpec` under ``root`` and a manifest of what was built."""

    def __init__(self, root: str, spec: DataSpec) -> None:
        self.spec = spec
        self.root = os.path.abspath(os.path.join(root, spec.key))
        os.makedirs(self.root, exist_ok=True)
        self.manifest_path = os.path.join(self.root, "manifest.json")
        self.manifest: dict[str, Any] = {}
        if os.path.exists(self.manifest_path):
            with open(self.manifest_path) as f:
                self.manifest = json.load(f)

    # -- paths ------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return subject_ids(self.spec)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def nifti_dirs(self, compressed: bool = True) -> tuple[str, str]:
        base = self.path("nii_gz" if compressed else "nii")
        return os.path.join(base, "imagesTr"), os.path.join(base, "labelsTr")

    def nifti_pairs(self, compressed: bool = True) -> list[tuple[str, str]]:
        ext = ".nii.gz" if compressed else ".nii"
        img_dir, lbl_dir = self.nifti_dirs(compressed)
        return [(os.path.join(img_dir, f"{s}_0000{ext}"), os.path.join(lbl_dir, f"{s}{ext}")) for s in self.ids]

    def npy_pairs(self) -> list[tuple[str, str]]:
        return [(self.path("npy", f"{s}.npy"), self.path("npy", f"{s}_seg.npy")) for s in self.ids]

    def b2nd_pairs(self) -> list[tuple[str, str]]:
        return [(self.path("b2nd", f"{s}.b2nd"), self.path("b2nd", f"{s}_seg.b2nd")) for s in self.ids]

    # -- manifest -----------------------------------------------------------------------------
    def save(self) -> None:
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.manifest, f, indent=1)
        os.replace(tmp, self.manifest_path)

    def layout(self, name: str) -> dict[str, Any] | None:
        return self.manifest.get("layouts", {}).get(name)

    def record(self, name: str, **info: Any) -> None:
        self.manifest.setdefault("layouts", {})[name] = info
        self.save()

    def ensure(
        self, name: str, build: Callable[[], dict[str, Any]], log: Callable[[str], None] = print, key: Any = None
    ) -> dict:
        """Build layout ``name`` unless the manifest has it (built with the same ``key``, e.g. the
        write settings, so a changed default is not measured on a stale layout); ``build``
        returns its info."""
        key = json.loads(json.dumps(key))  # as the manifest will hold it (tuples become lists)
        have = self.layout(name)
        if have is not None and have.get("key") == key:
            return have
        log(f"  building {self.spec.name}/{name} ...")
        t0 = time.perf_counter()
        info = build()
        info.setdefault("build_s", time.perf_counter() - t0)
        info["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if key is not None:
            info["key"] = key
        self.record(name, **info)
        return info

    # -- base layouts ---------------------------------------------------------------------------
    def build_sources(self, log: Callable[[str], None] = print) -> None:
        """Volumes → .nii.gz and .nii (one pass, one volume in memory at a time)."""
        if all(self.layout(n) for n in ("nii_gz", "nii")):
            return
        log(f"  generating {self.spec.n_subjects} volumes of {self.spec.shape} ({self.spec.name}) ...")
        import nibabel as nib

        for d in (*self.nifti_dirs(True), *self.nifti_dirs(False)):
            os.makedirs(d, exist_ok=True)
        t = {"gen": 0.0, "nii_gz": 0.0, "nii": 0.0}
        aff = affine()
        for i, (gz, raw) in enumerate(zip(self.nifti_pairs(True), self.nifti_pairs(False))):
            t0 = time.perf_counter()
            image, label = ct_like(self.spec.shape, seed=self.spec.seed * 1000 + i)
            t["gen"] += time.perf_counter() - t0
            for key, paths in (("nii_gz", gz), ("nii", raw)):
                t0 = time.perf_counter()
                for data, p in zip((image, label), paths):
                    img = nib.Nifti1Image(data, aff)
                    img.header.set_xyzt_units("mm", "sec")
                    nib.save(img, p)
                t[key] += time.perf_counter() - t0
        n_vox = int(np.prod(self.spec.shape)) * self.spec.n_subjects
        self.record("nii_gz", bytes=dir_size(self.path("nii_gz")), build_s=t["nii_gz"], voxels=n_vox)
        self.record("nii", bytes=dir_size(self.path("nii")), build_s=t["nii"])
        self.manifest["generate_s"] = t["gen"]
        self.save()

    def nii_gz_bytes(self) -> int:
        return int(self.layout("nii_gz")["bytes"])
