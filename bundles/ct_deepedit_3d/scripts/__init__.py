"""Code of the ``ct_deepedit_3d`` bundle (referenced from its configs as ``scripts.…``).

``transforms`` (label names and click points as MONAI's DeepEdit transforms and MONAI Label
expect them), ``clicks`` (simulated annotator clicks; Dice after 0, 1, 5, 10 clicks to CSV and
PNG), ``synthetic`` (volumes whose faint structure an automatic pass misses).
"""
