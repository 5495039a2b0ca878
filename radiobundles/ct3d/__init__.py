"""Helpers of the ``ct_segmentation_3d`` bundle, referenced from its configs by dotted path.

* :mod:`.datasets`: label-driven patch training datasets, store (patch reads) or NIfTI.
* :mod:`.handlers`: TensorBoard slice panel, progress bar.
* :mod:`.networks`: a UNet on a coarser working grid, answering on the input grid.
* :mod:`.postprocess`: a faster channel argmax (``AsDiscreted(argmax=True)``'s labels).
* :mod:`.metrics`: per-subject, per-class Dice and HD95 (mm) as CSV, plus a summary.
* :mod:`.store_output`: predictions into a store collection; NIfTI names by subject.
* :mod:`.dicom_output`: predictions as DICOM SEG referencing the source series (optionally STOW-RS).
* :mod:`.visualize`: image / ground truth / prediction panels.
* :mod:`.report`: training curves and overlay figures, baselines (for the demo; needs matplotlib).

Example:
    >>> from radiobundles.ct3d import patch_training_dataset, SubjectMetricsSaver
"""

from __future__ import annotations

from radiobundles.ct3d.datasets import PatchesPerSubject, datalist_source, patch_training_dataset
from radiobundles.ct3d.dicom_output import SaveDicomSegd, bundle_class_names
from radiobundles.ct3d.handlers import ProgressBarHandler, TensorBoardSlicePanel, loss_value, progress_values
from radiobundles.ct3d.metrics import SubjectMetricsSaver, class_name_list, segmentation_scores, subject_id_of
from radiobundles.ct3d.networks import CoarseGridUNet
from radiobundles.ct3d.postprocess import ArgmaxLabeld, channel_argmax
from radiobundles.ct3d.store_output import SaveToStored, subject_name_formatter, write_label_volume
from radiobundles.ct3d.visualize import best_slice, label_map, slice_panel

__all__ = [
    "ArgmaxLabeld",
    "CoarseGridUNet",
    "PatchesPerSubject",
    "ProgressBarHandler",
    "SaveDicomSegd",
    "SaveToStored",
    "SubjectMetricsSaver",
    "TensorBoardSlicePanel",
    "best_slice",
    "bundle_class_names",
    "channel_argmax",
    "class_name_list",
    "datalist_source",
    "label_map",
    "loss_value",
    "patch_training_dataset",
    "progress_values",
    "segmentation_scores",
    "slice_panel",
    "subject_id_of",
    "subject_name_formatter",
    "write_label_volume",
]
