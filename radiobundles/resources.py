"""Where the shipped bundles and settings files are: a repository checkout or an installed wheel.

The wheel carries ``bundles/`` and ``configs/`` as data files under ``<prefix>/share/radiobundles/``
(``pyproject.toml``, ``[tool.setuptools.data-files]``); a checkout has them beside the packages.
An environment variable points elsewhere (a user's own bundles, a copy being edited):

=============================  ==========================================
``RADIOBUNDLES_BUNDLES_DIR``   folder holding ``<bundle name>/configs/...``
``RADIOBUNDLES_CONFIGS_DIR``   folder holding the settings YAML files
=============================  ==========================================

Example:
    >>> bundle_path("ct_segmentation_3d")
    PosixPath('/work/radiobundles/bundles/ct_segmentation_3d')
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BUNDLES_ENV", "CONFIGS_ENV", "bundle_path", "bundles_dir", "configs_dir"]

BUNDLES_ENV = "RADIOBUNDLES_BUNDLES_DIR"
CONFIGS_ENV = "RADIOBUNDLES_CONFIGS_DIR"
_CHECKOUT = Path(__file__).resolve().parents[1]  # the repository root when run from a checkout


def _locate(kind: str, env: str, marker: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    candidates = [_CHECKOUT / kind]
    # installed wheel: data files land under the environment's prefix (sys.prefix, or a --user/--prefix base)
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, os.environ.get("PYTHONUSERBASE", "")]):
        if prefix:
            candidates.append(Path(prefix) / "share" / "radiobundles" / kind)
    for path in candidates:
        if (path / marker).exists():
            return path
    raise FileNotFoundError(
        f"no {kind}/ folder found (looked in {[str(c) for c in candidates]}); "
        f"install the radiobundles wheel, run from a repository checkout, or set {env}"
    )


def bundles_dir() -> Path:
    """The folder holding the shipped bundles (``$RADIOBUNDLES_BUNDLES_DIR`` if set)."""
    return _locate("bundles", BUNDLES_ENV, "ct_segmentation_3d/configs/metadata.json")


def configs_dir() -> Path:
    """The folder holding the settings YAML files (``$RADIOBUNDLES_CONFIGS_DIR`` if set)."""
    return _locate("configs", CONFIGS_ENV, "hpo")


def bundle_path(name: str) -> Path:
    """The folder of bundle ``name`` under :func:`bundles_dir`.

    Raises:
        FileNotFoundError: no such bundle, listing the bundles that are there.
    """
    root = bundles_dir()
    path = root / name
    if not (path / "configs" / "metadata.json").is_file():
        there = sorted(p.name for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())
        raise FileNotFoundError(f"no bundle {name!r} in {root} (bundles there: {there}); set {BUNDLES_ENV}")
    return path
