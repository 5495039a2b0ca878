"""TIF and PNG files of 2D images: a MONAI reader, writers, and the inference saver.

``TifReader`` lets ``LoadImage(d)`` read TIF slices with tifffile, in numpy's ``(H, W)``
order (unlike ``PILReader`` it does not swap axes), so a slice read from a folder and the
same slice ingested into a store (``(H, W, 1)``) give the same array.

Example:
    >>> from monai.transforms import LoadImage
    >>> img = LoadImage(reader=TifReader, ensure_channel_first=True)("a.tif")
    >>> img.shape
    torch.Size([1, 256, 256])
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.transforms import MapTransform, Resize
from monai.utils import MetaKeys, ensure_tuple

from radiobject_adapter.io.tif import TIF_SUFFIXES, load_tif

__all__ = ["SaveGeneratedImaged", "TifReader", "to_uint8", "write_png", "write_tif"]


class TifReader(ImageReader):
    """Reads single-page grayscale TIF files (``.tif`` / ``.tiff``) for MONAI's ``LoadImage(d)``.

    Args:
        dtype: cast the data to this dtype (``None`` keeps the file's dtype).

    Example:
        >>> LoadImaged(keys="image", reader=TifReader(), ensure_channel_first=True)({"image": "a.tif"})
    """

    def __init__(self, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.dtype = dtype
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[str] | str) -> bool:
        return all(str(f).lower().endswith(TIF_SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[str] | str, **kwargs: Any) -> np.ndarray | list[np.ndarray]:
        arrays = [load_tif(os.fspath(f)) for f in ensure_tuple(data)]
        return arrays if len(arrays) > 1 else arrays[0]

    def get_data(self, img: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, dict]:
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for data in img if isinstance(img, (list, tuple)) else [img]:
            if self.dtype is not None:
                data = data.astype(self.dtype, copy=False)
            meta = {
                MetaKeys.SPATIAL_SHAPE: np.asarray(data.shape),
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
            }
            arrays.append(data)
            _copy_compatible_dict(meta, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta


def write_tif(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> str:
    """Write a 2D image (``(H, W)`` or ``(1, H, W)``) as a TIF, atomically (temp file + rename)."""
    import tifffile

    data = np.squeeze(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image))
    if data.ndim != 2:
        raise ValueError(f"expected a 2D image for {path}, got shape {data.shape}")
    path = os.fspath(path)
    tmp = f"{path}.partial"
    tifffile.imwrite(tmp, data)
    os.replace(tmp, path)
    return path


def to_uint8(image: np.ndarray | torch.Tensor, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Window a 2D image to ``value_range`` (default: its own min..max) as uint8 for previews."""
    data = np.squeeze(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32))
    lo, hi = value_range if value_range is not None else (float(data.min()), float(data.max()))
    scaled = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(
    path: str | os.PathLike, image: np.ndarray | torch.Tensor, value_range: tuple[float, float] | None = None
) -> str:
    """Write a 2D image (or an already uint8 grid) as an 8-bit PNG preview."""
    from PIL import Image

    data = np.asarray(image)
    pixels = data if data.dtype == np.uint8 and data.ndim == 2 else to_uint8(image, value_range)
    path = os.fspath(path)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


class SaveGeneratedImaged(MapTransform):
    """Save each generated image as ``<output_dir>/<name>.tif`` (float32) plus a PNG preview.

    Used as the inference evaluator's post-processing on decollated items.

    Args:
        keys: the generated image key (``"pred"``), a ``(1, h, w)`` tensor.
        output_dir: folder to write into (created).
        name_key: item key holding the output name (the condition image's name).
        reference_key: item key of the condition image; with ``resize_to_original`` the
            output is resized to its ``spatial_shape`` (the size of the original file).
        resize_to_original: write at the original size instead of the model's patch size.
        png: also write ``<name>.png``.

    Example:
        >>> SaveGeneratedImaged("pred", output_dir="out")({"pred": gen, "name": "img_001", "condition": cond})
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        name_key: str = "name",
        reference_key: str = "condition",
        resize_to_original: bool = True,
        png: bool = True,
    ) -> None:
        super().__init__(keys)
        self.output_dir = output_dir
        self.name_key = name_key
        self.reference_key = reference_key
        self.resize_to_original = resize_to_original
        self.png = png
        os.makedirs(output_dir, exist_ok=True)

    def _original_shape(self, d: Mapping[Hashable, Any]) -> tuple[int, int] | None:
        ref = d.get(self.reference_key)
        meta = getattr(ref, "meta", None)
        if not meta or MetaKeys.SPATIAL_SHAPE not in meta:
            return None
        shape = [int(s) for s in np.asarray(meta[MetaKeys.SPATIAL_SHAPE]).reshape(-1)[:2]]
        return shape[0], shape[1]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        name = str(d[self.name_key])
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key]).detach().float().cpu()
            shape = self._original_shape(d) if self.resize_to_original else None
            if shape is not None and tuple(image.shape[-2:]) != shape:
                image = Resize(spatial_size=shape, mode="bilinear")(image)
            array = np.asarray(image, dtype=np.float32)[0]
            suffix = "" if key == self.keys[0] else f"_{key}"
            write_tif(os.path.join(self.output_dir, f"{name}{suffix}.tif"), array)
            if self.png:
                write_png(os.path.join(self.output_dir, f"{name}{suffix}.png"), array)
        return d
