"""Reusable ignite / MONAI training handlers for the bundles.

Only what MONAI and ignite lack: BatchNorm re-calibration before validation, crash-safe
best/last/periodic checkpoints with resume and best-weight restore, resumable early stopping,
per-iteration telemetry (lr, gradient norm, iteration time, batch Dice), TensorBoard
histograms, the time left / a time budget for a run, and a ``metadata.json`` beside the weights
that names the classes the run trained. Everything else comes from ``monai.handlers``.

Example:
    >>> from radiobundles.training import BatchNormRecalibration, CheckpointManager
"""

from __future__ import annotations

from radiobundles.training.batchnorm import BatchNormRecalibration, batchnorm_layers, recalibrate_batchnorm
from radiobundles.training.checkpoint import CheckpointManager, periodic_checkpoints, save_atomic
from radiobundles.training.early_stopping import ResumableEarlyStopHandler, metric_score
from radiobundles.training.model_metadata import ModelMetadataWriter, metadata_for_classes, write_model_metadata
from radiobundles.training.telemetry import IterationTelemetry, batch_scalars, gradient_norm, mean_dice_from_logits
from radiobundles.training.tensorboard import TensorBoardHistogramHandler
from radiobundles.training.time_budget import RunClock, format_duration

__all__ = [
    "BatchNormRecalibration",
    "CheckpointManager",
    "IterationTelemetry",
    "ModelMetadataWriter",
    "ResumableEarlyStopHandler",
    "RunClock",
    "TensorBoardHistogramHandler",
    "batch_scalars",
    "batchnorm_layers",
    "format_duration",
    "gradient_norm",
    "mean_dice_from_logits",
    "metadata_for_classes",
    "metric_score",
    "periodic_checkpoints",
    "recalibrate_batchnorm",
    "save_atomic",
    "write_model_metadata",
]
