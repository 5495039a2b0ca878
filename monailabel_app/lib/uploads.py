"""Checking a label (or image) uploaded from 3D Slicer before anything is written.

A label is accepted only if it is a readable NIfTI or NRRD file on the image's voxel grid
(same shape, affine within ``affine_atol`` mm) holding non-negative whole numbers that fit the
label array's dtype. NRRD is what 3D Slicer writes for ``.seg.nrrd`` segmentations and what its
MONAILabelReviewer module always uploads; it is read with pynrrd and its ``space`` (usually
LPS, Slicer's and ITK's convention) is turned into the RAS affine NIfTI and the store use, so
both formats are compared with the image in one convention. The file is read from its bytes, not its name (MONAI Label names the
temporary file after whatever the client sent), and a gzip stream is never inflated beyond
what a volume of the image's shape can need, so a corrupt or hostile upload costs neither
memory nor stored data. Reading the upload is this module's; whether a label fits its image is
the data layer's (:mod:`radiobject_adapter.store.labels`, which ingest uses too).

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
import nrrd
import numpy as np

from monailabel_app.lib.errors import BadLabelUpload, InvalidRequest
from radiobject_adapter.io.nifti import LoadedVolume, load_nifti
from radiobject_adapter.store.labels import LabelError, as_label_array, check_label_grid

__all__ = ["nrrd_affine", "read_label_upload", "read_volume_upload"]

# how a 3D Slicer user puts a label on its image's grid
_SLICER_GRID_HINT = " (in 3D Slicer: the segmentation of this image, saved with the image as reference)"

_NRRD_MAGIC = b"NRRD"
# NRRD "space" values -> the flip that takes its world coordinates to RAS
_SPACES = {
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
}

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
    raise InvalidRequest(f"the label upload is not a readable NIfTI (nor NRRD) file ({'; '.join(errors)})")


def nrrd_affine(header: dict) -> tuple[np.ndarray, list[int]]:
    """The RAS voxel-to-world affine of an NRRD header, and which axes are spatial.

    NRRD gives ``space directions`` (one vector per axis, ``none`` for a non-spatial axis
    such as the layers of a ``.seg.nrrd``) and ``space origin`` in its ``space``; Slicer and
    ITK write ``left-posterior-superior``, so x and y flip to reach RAS.

    Example:
        >>> affine, axes = nrrd_affine(nrrd.read_header("label.seg.nrrd"))
    """
    space = str(header.get("space", "")).strip().lower()
    if space not in _SPACES:
        raise InvalidRequest(
            f"the NRRD upload has space {header.get('space')!r}; expected left-posterior-superior or "
            "right-anterior-superior (save it again from 3D Slicer)"
        )
    directions = np.asarray(header.get("space directions"), dtype=np.float64)
    if directions.ndim != 2 or directions.shape[1] != 3:
        raise InvalidRequest("the NRRD upload has no 3D 'space directions'; save it again from 3D Slicer")
    spatial = [i for i, row in enumerate(directions) if np.isfinite(row).all()]
    if len(spatial) != 3:
        raise InvalidRequest(f"the NRRD upload has {len(spatial)} spatial axes; a label has 3")
    origin = np.asarray(header.get("space origin", [0.0, 0.0, 0.0]), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = directions[spatial].T  # one column per voxel axis
    affine[:3, 3] = origin
    return np.diag([*_SPACES[space], 1.0]) @ affine, spatial


def _nrrd_header(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return nrrd.read_header(fh)
    except (nrrd.NRRDError, ValueError, UnicodeDecodeError) as err:
        raise InvalidRequest(f"the upload is not a readable NRRD file ({err}); save it again") from None


def _read_nrrd(path: str, max_voxels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (x, y, z as the affine's columns) and RAS affine of a 3D NRRD or a one-layer ``.seg.nrrd``."""
    header = _nrrd_header(path)
    affine, spatial = nrrd_affine(header)
    sizes = [int(n) for n in header.get("sizes", [])]
    others = [i for i in range(len(sizes)) if i not in spatial]
    if any(sizes[i] != 1 for i in others):
        raise BadLabelUpload(
            f"the NRRD upload holds {sizes[others[0]]} layers of overlapping segments; in 3D Slicer turn off "
            "overlapping segments (or save the label as .nii.gz) so that it is one label map"
        )
    if max_voxels is not None and int(np.prod(sizes)) > max_voxels:
        raise InvalidRequest(f"the NRRD upload has {int(np.prod(sizes))} voxels, more than its image ({max_voxels})")
    try:
        data, _ = nrrd.read(path, index_order="F")
    except (nrrd.NRRDError, ValueError, OSError, EOFError, zlib.error) as err:
        raise InvalidRequest(f"the NRRD upload is truncated or corrupt ({err}); save it again") from None
    data = np.asarray(data)
    if others:
        data = np.moveaxis(data, spatial, [0, 1, 2]).reshape([sizes[i] for i in spatial])
    return data, affine


def _is_nrrd(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == _NRRD_MAGIC


def read_volume_upload(path: str) -> LoadedVolume:
    """An uploaded image (NIfTI, or NRRD as 3D Slicer saves it with File Extension .nrrd).

    Raises:
        InvalidRequest: an unreadable, corrupt or non-3D file (HTTP 400).
    """
    if os.path.getsize(path) == 0:
        raise InvalidRequest("the image upload is empty; save the volume again")
    if _is_nrrd(path):
        data, affine = _read_nrrd(path)
        img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_xyzt_units("mm")
        return LoadedVolume(path=path, data=np.ascontiguousarray(data), affine=affine, header=img.header)
    try:
        return load_nifti(path)
    except ValueError as err:
        raise InvalidRequest(f"the image upload is not a readable 3D NIfTI or NRRD file: {err}") from None


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
    """The label array of an uploaded NIfTI or NRRD file, checked against its image.

    Args:
        path: the uploaded file.
        image_shape / image_affine: the grid the label must lie on.
        dtype: dtype of the stored label array; ``None`` picks the smallest that holds the values.
        affine_atol: largest allowed difference (mm) between label and image affines.
        image_id: used in messages.

    Raises:
        InvalidRequest: empty, unreadable, corrupt, neither NIfTI nor NRRD upload (HTTP 400).
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
    who = f" for image {image_id!r}" if image_id else ""
    expected = tuple(int(s) for s in image_shape)
    if _is_nrrd(path):
        nrrd_data, affine = _read_nrrd(path, max_voxels=n_voxels)
        shape = tuple(nrrd_data.shape)
    else:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == _GZIP_MAGIC:
            raw = _inflate(raw, limit)
        img = _parse(raw)
        shape = _squeeze_trailing(img.shape)
        affine = img.affine

    try:
        check_label_grid(shape, affine, expected, image_affine, affine_atol, who, hint=_SLICER_GRID_HINT)
    except LabelError as err:
        raise BadLabelUpload(str(err)) from None
    try:
        data = nrrd_data.reshape(expected) if _is_nrrd(path) else np.asanyarray(img.dataobj).reshape(expected)
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise InvalidRequest(f"the label upload is truncated or corrupt ({err}); save it again") from None

    try:
        return as_label_array(data, dtype, smallest=True, where=who)
    except LabelError as err:
        raise BadLabelUpload(str(err)) from None
