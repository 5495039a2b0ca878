"""radiobject's ``radiobject.ml``: its datasets and loader factories, with its batch keys.

The same engine as :mod:`radiobject_adapter.data` (partial reads, padded patches, fresh
positions every epoch, fork-safe workers), with radiobject's conventions where the two
differ: segmentation items carry ``mask`` (not MONAI's ``label``), items carry ``idx`` /
``patch_idx`` / ``slice_idx`` / ``obs_subject_id``, and training loaders drop the last
incomplete batch. The bundles and MONAI Label keep :mod:`radiobject_adapter.data` (``label``).
docs/radiobject-compat.md lists every difference.

Example:
    >>> from radiobject_adapter.ml import create_segmentation_dataloader
    >>> loader = create_segmentation_dataloader(image=radi.CT, mask=radi.seg, batch_size=4,
    ...     patch_size=(96, 96, 96), foreground_sampling=True)
    >>> batch = next(iter(loader)); batch["image"].shape, batch["mask"].shape
"""

from __future__ import annotations

from typing import Any

from radiobject_adapter.data.config import DatasetConfig, LoadingMode
from radiobject_adapter.data.datasets import LabelSource
from radiobject_adapter.ml.datasets import SegmentationDataset, VolumeCollectionDataset
from radiobject_adapter.ml.distributed import create_distributed_dataloader, set_epoch
from radiobject_adapter.ml.factory import (
    create_inference_dataloader,
    create_segmentation_dataloader,
    create_training_dataloader,
    create_validation_dataloader,
)

__all__ = [
    "Compose",
    "DatasetConfig",
    "LabelSource",
    "LoadingMode",
    "SegmentationDataset",
    "VolumeCollectionDataset",
    "VolumeCollectionSubjectsDataset",
    "create_distributed_dataloader",
    "create_inference_dataloader",
    "create_segmentation_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "set_epoch",
]


def __getattr__(name: str) -> Any:
    # TorchIO is optional: imported only when its dataset is asked for
    if name == "VolumeCollectionSubjectsDataset":
        from radiobject_adapter.data.torchio import VolumeCollectionSubjectsDataset

        return VolumeCollectionSubjectsDataset
    if name == "Compose":
        from monai.transforms import Compose

        return Compose
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
