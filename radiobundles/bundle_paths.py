"""Where a bundle's ``models/``, logs and outputs go when ``bundle_root`` is not given.

Model Zoo bundles set ``"bundle_root": "."`` and expect to be run from their own folder. Ours are
also run from the repository root (``python -m monai.bundle run --config_file
bundles/<name>/configs/train.json``), where ``.`` would scatter ``models/`` and ``logs/`` over the
repository. :func:`find_bundle_root` keeps both habits working; ``--bundle_root`` still wins.

Example:
    >>> find_bundle_root("ct_segmentation_3d")  # from the repository root
    '/work/radiobundles/bundles/ct_segmentation_3d'
"""

from __future__ import annotations

import os

__all__ = ["find_bundle_root"]


def find_bundle_root(name: str, cwd: str | None = None) -> str:
    """The bundle folder, as an absolute path.

    Looks for, in order: the working directory itself when it holds ``configs/metadata.json``
    (run from inside the bundle, the Model Zoo habit); ``bundles/<name>`` under the working
    directory (run from the repository root). Falls back to the working directory.
    """
    here = os.path.abspath(cwd or os.getcwd())
    if os.path.isfile(os.path.join(here, "configs", "metadata.json")):
        return here
    candidate = os.path.join(here, "bundles", name)
    if os.path.isfile(os.path.join(candidate, "configs", "metadata.json")):
        return candidate
    return here
