"""One item per axial slice, read from the store as a slice (one tile of an axially tiled store).

A stand-in for ``radiobject_adapter.data.VolumeCollectionDataset`` in ``LoadingMode.SLICE_2D``:
the bundle names it in one ``_target_`` (``train#slice_dataset``), so either can be used.

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
from monai.transforms import apply_transform
from torch.utils.data import Dataset

from radiobject_adapter import resolve_volume

__all__ = ["AxialSliceDataset", "training_dataset"]


class AxialSliceDataset(Dataset):
    """Axial slices of store volumes as MONAI dictionaries ``{"image": [1, X, Y], "label": [1, X, Y]}``.

    Only the requested slice is read (``Volume.axial``); each item also carries
    ``subject_id`` (and whatever else the datalist entry holds) and ``slice_index``.

    Args:
        data: datalist entries whose ``keys`` are volume addresses (``radiobundles.datalists.make_datalist``).
        transform: MONAI (dictionary) transform applied to each slice item.
        keys: the address keys to read; the first one sets the number of slices.
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
        self.transform = transform
        self.keys = tuple(keys)
        self.dtype = dtype
        self._index: list[tuple[int, int]] = []
        for i, item in enumerate(self.data):
            missing = [k for k in self.keys if k not in item]
            if missing:
                raise KeyError(f"datalist entry {i} ({item.get('subject_id', '?')}) has no {missing}; entry: {item}")
            depth = resolve_volume(str(item[self.keys[0]])).shape[2]
            self._index.extend((i, z) for z in range(depth))

    def __len__(self) -> int:
        return len(self._index)

    def slice_of(self, index: int) -> tuple[str, int]:
        """``(subject_id, slice index)`` of item ``index``."""
        i, z = self._index[index]
        return str(self.data[i].get("subject_id", i)), z

    def __getitem__(self, index: int) -> Any:
        i, z = self._index[index]
        entry = self.data[i]
        item = {k: v for k, v in entry.items() if k not in self.keys}
        for key in self.keys:
            plane = resolve_volume(str(entry[key])).axial(z)
            item[key] = np.ascontiguousarray(plane[None], dtype=self.dtype)
        item["slice_index"] = z
        return apply_transform(self.transform, item) if self.transform is not None else item


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
