"""Code of the ``mri_slice_segmentation_2d`` bundle (referenced from its configs as ``scripts.…``).

Volumes ``[B, C, H, W, D]`` are trained on as slices ``[B*D, C, H, W]``; predictions are
reassembled into 3D volumes on the source grid. ``data`` (image collection, loading mode),
``dataset`` (axial slice datasets from a store or NIfTI), ``collate`` (volume batches to slice
batches), ``losses``, ``inference`` (slice-wise prediction of a volume), ``evaluation`` (named
metrics CSV, the training settings), ``visualize`` (middle-slice panels). Checkpointing, early
stopping, BatchNorm re-calibration, datalists and the store-or-NIfTI reader are shared by
several bundles and stay in the installed ``radiobundles`` package; the Optuna driver is
``radiobundles.slice2d.hpo``.
"""
