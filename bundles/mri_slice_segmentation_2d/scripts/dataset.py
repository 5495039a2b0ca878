"""One item per axial slice, read from the store as a slice (one tile of an axially tiled store).

The data layer's :class:`radiobject_adapter.TileDBDataset` in ``LoadingMode.SLICE_2D`` (axial),
with this bundle's item form: plain NumPy arrays ``[1, X, Y]`` of one dtype under the datalist's
own keys. The bundle names it in one ``_target_`` (``train#slice_dataset``).

Example:
    >>> data = make_datalist("store", split="train")      # radiobundles.datalists
    >>> ds = AxialSliceDataset(data, transform=slice_transforms)
    >>> ds[0]["image"].shape            # (1, X, Y) before transforms
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monai.data import CacheDataset
from torch.utils.data import Dataset

from radiobject_adapter import DatasetConfig, LoadingMode, TileDBDataset

__all__ = ["AxialSliceDataset", "training_dataset"]

_AXIAL = 2


class AxialSliceDataset(TileDBDataset):
    """Axial slices of store volumes as MONAI dictionaries ``{"image": [1, X, Y], "label": [1, X, Y]}``.

    Only the requested slice is read (``Volume.plane``); each item also carries
    ``subject_id`` (and whatever else the datalist entry holds) and ``slice_index``.

    Args:
        data: datalist entries whose ``keys`` are volume addresses (``radiobundles.datalists.make_datalist``).
        transform: MONAI (dictionary) transform applied to each slice item.
        keys: the address keys to read: the image, then optionally its label (same grid).
        dtype: cast the slices to this dtype.
    """

    def __init__(
        self,
        data: Sequence[dict[str, Any]],
        transform: Callable[[dict[str, Any]], Any] | None = None,
        keys: Sequence[str] = ("image", "label"),
        dtype: Any = np.float32,
    ) -> None:
        self.data = list(data)
        self.keys = tuple(keys)
        if not 1 <= len(self.keys) <= 2:
            raise ValueError(f"keys: an image key and optionally a label key, got {self.keys}")
        self.dtype = dtype
        for i, item in enumerate(self.data):
            missing = [k for k in self.keys if k not in item]
            if missing:
                raise KeyError(f"datalist entry {i} ({item.get('subject_id', '?')}) has no {missing}; entry: {item}")
        super().__init__(
            self.data,
            DatasetConfig(loading_mode=LoadingMode.SLICE_2D, slice_axis=_AXIAL, image_dtype=None),
            transform=transform,
            image_key=self.keys[0],
            label_key=self.keys[1] if len(self.keys) > 1 else "",  # "": no label key in any entry
        )

    def slice_of(self, index: int) -> tuple[str, int]:
        """``(subject_id, slice index)`` of item ``index``."""
        i, z = self._locate(index)
        return str(self.data[i].get("subject_id", i)), z

    def load_sample(self, rec_index: int, sub_index: int, start: Sequence[int] | None = None) -> dict[str, Any]:
        sample = super().load_sample(rec_index, sub_index, start)
        item = {k: v for k, v in self.data[rec_index].items() if k not in self.keys}
        for key, read in zip(self.keys, ("image", "label")):
            item[key] = np.ascontiguousarray(sample[read].numpy(), dtype=self.dtype)
        item["slice_index"] = sub_index
        return item


def training_dataset(
    data: Sequence[dict[str, Any]],
    loading: str,
    slice_transform: Callable[[dict[str, Any]], Any],
    volume_transform: Callable[[dict[str, Any]], Any],
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Dataset:
    """The training dataset for ``loading`` (``"slices"`` or ``"volumes"``, see ``slice_loading``).

    One component with a literal ``data`` argument, so that MONAI Label's ``BundleTrainTask``
    (which sets ``train#dataset#data``) and the Model Zoo's key checks find the datalist.

    Example:
        >>> ds = training_dataset(datalist, "volumes", slice_tf, volume_tf, cache_rate=0.0)
    """
    if loading == "slices":
        return AxialSliceDataset(data, transform=slice_transform)
    if loading == "volumes":
        return CacheDataset(data, transform=volume_transform, cache_rate=cache_rate, num_workers=num_workers)
    raise ValueError(f"loading must be 'slices' or 'volumes', not {loading!r}")
