"""CT segmentation helpers that several users share: the ``ct_segmentation_3d`` bundle's configs,
the MONAI Label app, the demo and the benchmarks.

Code only that bundle uses is in its own ``scripts/`` (``bundles/ct_segmentation_3d/scripts``:
patch datasets, handlers, per-subject metrics, DICOM SEG output, the coarse-grid UNet).

* :mod:`.postprocess`: a faster channel argmax (``AsDiscreted(argmax=True)``'s labels; bundle, benchmarks).
* :mod:`.store_output`: predictions into a store collection; NIfTI names by subject (bundle, app).
* :mod:`.visualize`: image / ground truth / prediction panels (bundle, demo report, store output).
* :mod:`.report`: training curves and overlay figures, baselines (for the demo; needs matplotlib).

Example:
    >>> from radiobundles.ct3d import ArgmaxLabeld, SaveToStored
"""

from __future__ import annotations

from radiobundles.ct3d.postprocess import ArgmaxLabeld, channel_argmax
from radiobundles.ct3d.store_output import SaveToStored, subject_name_formatter, write_label_volume
from radiobundles.ct3d.visualize import best_slice, label_map, slice_panel

__all__ = [
    "ArgmaxLabeld",
    "SaveToStored",
    "best_slice",
    "channel_argmax",
    "label_map",
    "slice_panel",
    "subject_name_formatter",
    "write_label_volume",
]
