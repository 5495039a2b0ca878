"""Code of the ``mri_classification_3d`` bundle (referenced from its configs as ``scripts.…``).

``data`` (subjects, classes, split, loaders from a store or a NIfTI folder), ``metrics``
(accuracy, balanced accuracy, AUC), ``report`` (evaluation files, predictions into the
store), ``gradcam`` (overlay PNGs), ``synthetic`` (learnable test data).
"""
