"""Code of the ``ct_segmentation_3d`` bundle (referenced from its configs as ``scripts.…``).

``datasets`` (label-driven patch training datasets, store patch reads or NIfTI), ``handlers``
(TensorBoard slice panel, progress bar), ``metrics`` (per-subject, per-class Dice and HD95 in mm
as CSV, plus a summary), ``dicom_output`` (predictions as DICOM SEG referencing the source
series, optionally STOW-RS), ``networks`` (a UNet on a coarser working grid, answering on the
input grid). What the MONAI Label app, the demo and other bundles share stays in the installed
``radiobundles`` package (``radiobundles.ct3d``: argmax, store output, panels; checkpointing,
datalists, the store-or-NIfTI reader).
"""
