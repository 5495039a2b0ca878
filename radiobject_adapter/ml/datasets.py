"""radiobject's dataset classes: our datasets with radiobject's item keys and properties.

Items: ``image``, ``idx`` (volume position), ``patch_idx`` + ``patch_start`` (patches),
``slice_idx`` (slices), ``obs_id``, ``obs_subject_id``; segmentation items carry the mask
under ``mask``; classification targets stay under ``label`` (as in radiobject).

Example:
    >>> ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode="patch", patch_size=(64, 64, 64)))
    >>> sorted(ds[0])   # ['idx', 'image', 'mask', 'obs_id', 'obs_subject_id', 'patch_idx', 'patch_start']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from radiobject_adapter.data import datasets as _ours
from radiobject_adapter.data.config import DatasetConfig, LoadingMode

__all__ = ["SegmentationDataset", "VolumeCollectionDataset", "radiobject_keys"]


def radiobject_keys(
    item: dict[str, Any], rec_index: int, sub_index: int, mode: LoadingMode, mask: bool
) -> dict[str, Any]:
    """Rename one item of our datasets to radiobject's keys (see the module docstring)."""
    out = dict(item)
    out["idx"] = rec_index
    if mode is LoadingMode.PATCH:
        out["patch_idx"] = sub_index
    if "slice_index" in out:
        out["slice_idx"] = out.pop("slice_index")
    if "subject_id" in out:
        out["obs_subject_id"] = out.pop("subject_id")
    if mask and "label" in out:
        out["mask"] = out.pop("label")
    return out


class _RadiobjectItems:
    """Mixin: radiobject's keys, applied before the transforms (which name them)."""

    _mask_key = False

    def load_sample(self, rec_index: int, sub_index: int, start: Sequence[int] | None = None) -> dict[str, Any]:
        item = super().load_sample(rec_index, sub_index, start)  # type: ignore[misc]
        return radiobject_keys(item, rec_index, sub_index, self.config.loading_mode, self._mask_key)  # type: ignore[attr-defined]

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """The ``(X, Y, Z)`` of the first volume (radiobject requires one shared shape)."""
        return tuple(int(n) for n in self.records[0]["images"][0].shape[:3])  # type: ignore[attr-defined,return-value]

    @property
    def n_volumes(self) -> int:
        return len(self.records)  # type: ignore[attr-defined]

    @property
    def n_channels(self) -> int:
        """Channels of ``image``: one per image collection."""
        return len(self.records[0]["images"])  # type: ignore[attr-defined]


class VolumeCollectionDataset(_RadiobjectItems, _ours.VolumeCollectionDataset):
    """radiobject's ``VolumeCollectionDataset(collections, config, labels, transform)``.

    Example:
        >>> ds = VolumeCollectionDataset([radi.T1w, radi.FLAIR], labels="diagnosis")
        >>> ds.n_channels, ds.collection_names, ds[0]["idx"]
    """

    @property
    def collection_names(self) -> list[str]:
        return [c.name for c in self.collections]


class SegmentationDataset(_RadiobjectItems, _ours.SegmentationDataset):
    """radiobject's ``SegmentationDataset(image, mask, config, image_transform, spatial_transform,
    foreground_sampling, ...)``: items carry ``image`` and ``mask``.

    Example:
        >>> ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode="patch",
        ...     patch_size=(64, 64, 64)), foreground_sampling=True)
    """

    _mask_key = True

    def __init__(self, image: Any, mask: Any, config: DatasetConfig | None = None, **kwargs: Any) -> None:
        images = image if isinstance(image, (list, tuple)) else [image]
        for col in images:
            if len(mask) != len(col):  # radiobject pairs volumes by position: lengths must agree
                raise ValueError(f"mask collection {mask.name!r} has {len(mask)} volumes, expected {len(col)}")
        super().__init__(image, mask, config, **kwargs)
        self.image, self.mask = image, mask

    @property
    def collection_names(self) -> list[str]:
        images = self.image if isinstance(self.image, (list, tuple)) else [self.image]
        return [c.name for c in images] + [self.mask.name]
