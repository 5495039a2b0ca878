"""Checking a label uploaded from 3D Slicer before anything is written.

A label is accepted only if it is a readable NIfTI file on the image's voxel grid (same
shape, affine within ``affine_atol`` mm) holding non-negative whole numbers that fit the
label array's dtype. The file is read from its bytes, not its name (MONAI Label names the
temporary file after whatever the client sent), and a gzip stream is never inflated beyond
what a volume of the image's shape can need, so a corrupt or hostile upload costs neither
memory nor stored data.

Example:
    >>> labels = read_label_upload("/tmp/upload.nii.gz", image_shape=(64, 64, 40), image_affine=affine)
    >>> labels.dtype, labels.shape
    (dtype('uint8'), (64, 64, 40))
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from monailabel_app.lib.errors import BadLabelUpload, InvalidRequest

__all__ = ["label_dtype_for", "read_label_upload"]

_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_SLACK = 16 * 1024 * 1024  # NIfTI header + extensions a sane file may carry


def _inflate(raw: bytes, limit: int) -> bytes:
    """Decompress a gzip stream, refusing to produce more than ``limit`` bytes."""
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
                if out.tell() > limit:
                    raise InvalidRequest(
                        f"the label upload inflates to more than {limit} bytes, more than a label of the "
                        "image's shape can hold; upload the label exported on the image grid"
                    )
    except (OSError, EOFError, zlib.error) as err:
        raise InvalidRequest(f"the label upload is a corrupt or truncated gzip stream ({err}); save it again") from None
    return out.getvalue()


def _parse(raw: bytes) -> nib.Nifti1Image | nib.Nifti2Image:
    errors = []
    for klass in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return klass.from_bytes(raw)
        except Exception as err:  # nibabel raises several types for foreign or damaged headers
            errors.append(f"{klass.__name__}: {err}")
    if raw[:4] == b"NRRD":
        raise InvalidRequest(
            "label uploads must be NIfTI (.nii or .nii.gz), this is NRRD; in 3D Slicer set "
            "Edit > Application Settings > MONAI Label > File Extension to .nii.gz"
        )
    raise InvalidRequest(f"the label upload is not a readable NIfTI file ({'; '.join(errors)})")


def label_dtype_for(top: int) -> np.dtype:
    """Smallest unsigned dtype for class indices up to ``top`` (as ingest chooses)."""
    if top < 256:
        return np.dtype(np.uint8)
    if top < 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def _squeeze_trailing(shape: Sequence[int]) -> tuple[int, ...]:
    dims = list(int(s) for s in shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def read_label_upload(
    path: str,
    image_shape: Sequence[int],
    image_affine: np.ndarray,
    dtype: np.dtype | None = None,
    affine_atol: float = 1e-3,
    image_id: str = "",
) -> np.ndarray:
    """The label array of an uploaded NIfTI file, checked against its image.

    Args:
        path: the uploaded file.
        image_shape / image_affine: the grid the label must lie on.
        dtype: dtype of the stored label array; ``None`` picks the smallest that holds the values.
        affine_atol: largest allowed difference (mm) between label and image affines.
        image_id: used in messages.

    Raises:
        InvalidRequest: empty, unreadable, corrupt or non-NIfTI upload (HTTP 400).
        BadLabelUpload: wrong shape or affine, non-integer, negative or too large values (HTTP 422).
    """
    size = os.path.getsize(path)
    if size == 0:
        raise InvalidRequest("the label upload is empty; export the segmentation again and save")
    n_voxels = int(np.prod([int(s) for s in image_shape]))
    limit = 352 + _HEADER_SLACK + n_voxels * 16  # 16 bytes: the widest NIfTI voxel type
    if size > limit:
        raise InvalidRequest(
            f"the label upload has {size} bytes, more than a label of shape {tuple(image_shape)} needs"
        )
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == _GZIP_MAGIC:
        raw = _inflate(raw, limit)
    img = _parse(raw)
    who = f" for image {image_id!r}" if image_id else ""

    shape = _squeeze_trailing(img.shape)
    expected = tuple(int(s) for s in image_shape)
    if shape != expected:
        raise BadLabelUpload(
            f"label shape {shape} != image shape {expected}{who}; export the label on the image grid "
            "(in 3D Slicer: the segmentation of this image, saved with the image as reference)"
        )
    diff = float(np.abs(np.asarray(img.affine, dtype=np.float64) - np.asarray(image_affine, dtype=np.float64)).max())
    if diff > affine_atol:
        raise BadLabelUpload(
            f"label affine differs from the image affine by up to {diff:.4g} mm (> {affine_atol}){who}; "
            "the label was drawn on another grid: resample it onto the image before saving"
        )
    try:
        data = np.asanyarray(img.dataobj).reshape(expected)
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise InvalidRequest(f"the label upload is truncated or corrupt ({err}); save it again") from None

    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise BadLabelUpload(f"the label has NaN or infinite values{who}; labels are class indices")
        if not np.array_equal(data, np.round(data)):
            raise BadLabelUpload(f"the label has non-integer values{who}; labels are class indices")
    elif data.dtype.kind not in "iub":
        raise BadLabelUpload(f"the label has voxel type {data.dtype}{who}; labels are integer class indices")
    low = float(data.min(initial=0))
    top = int(data.max(initial=0))
    if low < 0:
        raise BadLabelUpload(f"the label has negative values{who}; labels are class indices >= 0")
    target = np.dtype(dtype) if dtype is not None else label_dtype_for(top)
    if top > np.iinfo(target).max:
        raise BadLabelUpload(
            f"the label has class {top}{who}, more than the stored labels' type {target} holds "
            f"(max {np.iinfo(target).max})"
        )
    return np.ascontiguousarray(data.astype(target, copy=False))
