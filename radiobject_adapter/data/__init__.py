"""Datasets, samplers and loader factories over store volumes (see :mod:`.datasets`).

The names are imported on first use (PEP 562), so ``radiobject_adapter.data.config`` and the
package itself load without torch, MONAI or TorchIO; TorchIO is needed only for
:class:`VolumeCollectionSubjectsDataset`.

Example:
    >>> from radiobject_adapter.data import DatasetConfig, create_training_dataloader
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_HOMES: dict[str, str] = {
    "DatasetConfig": "radiobject_adapter.data.config",
    "LoadingMode": "radiobject_adapter.data.config",
    "SegmentationDataset": "radiobject_adapter.data.datasets",
    "TileDBDataset": "radiobject_adapter.data.datasets",
    "VolumeCollectionDataset": "radiobject_adapter.data.datasets",
    "VolumeCollectionSubjectsDataset": "radiobject_adapter.data.torchio",
    "create_inference_dataloader": "radiobject_adapter.data.loaders",
    "create_segmentation_dataloader": "radiobject_adapter.data.loaders",
    "create_training_dataloader": "radiobject_adapter.data.loaders",
    "create_validation_dataloader": "radiobject_adapter.data.loaders",
    "make_dataloader": "radiobject_adapter.data.loaders",
}

if TYPE_CHECKING:
    from radiobject_adapter.data.config import DatasetConfig, LoadingMode
    from radiobject_adapter.data.datasets import SegmentationDataset, TileDBDataset, VolumeCollectionDataset
    from radiobject_adapter.data.loaders import (
        create_inference_dataloader,
        create_segmentation_dataloader,
        create_training_dataloader,
        create_validation_dataloader,
        make_dataloader,
    )
    from radiobject_adapter.data.torchio import VolumeCollectionSubjectsDataset

__all__ = [
    "DatasetConfig",
    "LoadingMode",
    "SegmentationDataset",
    "TileDBDataset",
    "VolumeCollectionDataset",
    "VolumeCollectionSubjectsDataset",
    "create_inference_dataloader",
    "create_segmentation_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "make_dataloader",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'radiobject_adapter.data' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
