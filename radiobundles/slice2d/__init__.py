"""Slice-wise 2D segmentation over 3D volumes: data, collation, losses, inference, HPO.

Volumes ``[B, C, H, W, D]`` are trained on as slices ``[B*D, C, H, W]``; predictions are
reassembled into 3D volumes on the source grid. The bundle
``bundles/mri_slice_segmentation_2d`` references these by dotted path.

Example:
    >>> from radiobundles.slice2d import AxialSliceDataset, SlicePrepareBatch, slice_loading
"""

from __future__ import annotations

from radiobundles.slice2d.collate import SlicePrepareBatch, slices_to_volumes, volumes_to_slices
from radiobundles.slice2d.data import LOADING_MODES, resolve_image_collection, slice_loading
from radiobundles.slice2d.dataset import AxialSliceDataset, training_dataset
from radiobundles.slice2d.evaluation import NamedMetricsSaver, save_training_settings, training_settings
from radiobundles.slice2d.inference import predict_volume, slice_inferer
from radiobundles.slice2d.losses import LOSSES, CrossEntropySegLoss, segmentation_loss
from radiobundles.slice2d.visualize import middle_slice, middle_slice_pair, middle_slice_prediction

__all__ = [
    "LOADING_MODES",
    "LOSSES",
    "AxialSliceDataset",
    "CrossEntropySegLoss",
    "NamedMetricsSaver",
    "SlicePrepareBatch",
    "middle_slice",
    "middle_slice_pair",
    "middle_slice_prediction",
    "predict_volume",
    "resolve_image_collection",
    "save_training_settings",
    "segmentation_loss",
    "slice_inferer",
    "slice_loading",
    "slices_to_volumes",
    "training_dataset",
    "training_settings",
    "volumes_to_slices",
]
