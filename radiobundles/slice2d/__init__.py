"""The hyper-parameter search driver of the ``mri_slice_segmentation_2d`` bundle (:mod:`.hpo`).

The bundle's own code (slice datasets, collation, losses, slice inference, evaluation, panels)
is in its ``scripts/`` (``bundles/mri_slice_segmentation_2d/scripts``); the driver runs the
bundle's ``train.json`` from outside, with that package importable as ``scripts``.

Example:
    >>> from radiobundles.slice2d.hpo import run_search
"""

from __future__ import annotations

__all__: list[str] = []
