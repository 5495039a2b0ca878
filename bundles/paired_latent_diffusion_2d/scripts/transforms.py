"""Preprocessing of paired 2D slices: the pipeline (masked local normalisation included), dict-to-tuple.

The pipeline is MONAI's own transforms end to end: ``LoadImaged`` (TIF via
:class:`~scripts.io.TifReader`, store via ``radiobject_adapter.TileDBReader``),
channel first, ``NormalizeIntensityd(nonzero=True, channel_wise=True)`` (each channel z-scored
with the statistics of its non-zero pixels: background stays exactly 0, a constant or empty
image gives zeros, never NaN), ``Resized`` to the patch size, optional
``RandAffined`` (dictionary transforms draw one set of random parameters per call, so both
images of a pair move together), float32.

Normalisation comes *before* resizing on purpose: interpolation turns the background just
outside the anatomy into small positive values; normalised afterwards, those pixels would
join the mask and become a dark ring of about ``-mean/std``. Normalised first, they blend
between 0 and the tissue value, and background away from the anatomy stays exactly 0
(zero padding of the augmentation included).

Example:
    >>> t = paired_transforms(["target", "condition"], patch_size=(256, 256), augment=True)
    >>> target, condition = t({"target": "edente/img_001.tif", "condition": "dente/img_001.tif"})
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    RandAffined,
    Resized,
    SqueezeDimd,
    Transform,
)
from monai.utils import ensure_tuple, ensure_tuple_rep

from .io import TifReader

__all__ = [
    "STORE_READER",
    "TIF_READER",
    "DictToTuple",
    "paired_transforms",
]

TIF_READER = TifReader  # the class itself: a dotted name would depend on how scripts/ was imported
STORE_READER = "radiobject_adapter.TileDBReader"


class DictToTuple(Transform):
    """Turn a dict into the tuple of its ``keys`` values (one key: the value itself).

    Loaders then yield ``(target, condition)`` pairs or plain image tensors, which MONAI's
    ``default_prepare_batch`` understands.

    Example:
        >>> DictToTuple(["target", "condition"])({"target": t, "condition": c, "name": "a"})
        (t, c)
    """

    def __init__(self, keys: KeysCollection) -> None:
        self.keys = ensure_tuple(keys)
        if not self.keys:
            raise ValueError("DictToTuple needs at least one key")

    def __call__(self, data: Mapping[Hashable, Any]) -> Any:
        missing = [k for k in self.keys if k not in data]
        if missing:
            raise KeyError(f"DictToTuple: keys {missing} not in item (keys: {list(data)})")
        values = tuple(data[k] for k in self.keys)
        return values[0] if len(values) == 1 else values


def paired_transforms(
    keys: Sequence[str],
    patch_size: int | Sequence[int],
    reader: str | type = TIF_READER,
    augment: bool = False,
    output_keys: Sequence[str] | None = None,
    track_meta: bool = False,
) -> Compose:
    """The preprocessing pipeline for one image or an aligned pair.

    Args:
        keys: item keys holding file paths or store addresses (e.g. ``["target", "condition"]``).
        patch_size: output size ``(H, W)`` (an int means square).
        reader: :data:`TIF_READER` for TIF files, :data:`STORE_READER` for store addresses.
        augment: small random rotation / scaling / translation, identical for all ``keys``.
        output_keys: if given, end with :class:`DictToTuple` over these keys.
        track_meta: keep ``MetaTensor`` meta (needed to save outputs at the original size).
    """
    keys = list(keys)
    size = tuple(int(s) for s in ensure_tuple_rep(patch_size, 2))
    steps: list[Any] = [LoadImaged(keys, reader=reader, image_only=True, ensure_channel_first=True, expanduser=False)]
    if reader == STORE_READER:
        steps.append(SqueezeDimd(keys, dim=3))  # store volumes are (H, W, 1)
    # masked local normalisation: statistics of the anatomy, not of the air around it
    steps.append(NormalizeIntensityd(keys, nonzero=True, channel_wise=True, dtype=np.float32))
    steps.append(Resized(keys, spatial_size=size, mode="bilinear", anti_aliasing=True))
    if augment:
        steps.append(
            RandAffined(
                keys,
                prob=0.5,
                rotate_range=(np.deg2rad(5.0),),
                scale_range=(0.05, 0.05),
                translate_range=(0.04 * size[0], 0.04 * size[1]),
                mode="bilinear",
                padding_mode="zeros",
            )
        )
    steps.append(EnsureTyped(keys, dtype=torch.float32, track_meta=track_meta))
    if output_keys is not None:
        steps.append(DictToTuple(output_keys))
    return Compose(steps)
