"""Datasets, samplers and loader factories over store volumes (see :mod:`.datasets`)."""

from __future__ import annotations

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
