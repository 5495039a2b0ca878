"""Declarative settings that are not a bundle's: the YAML files of the repository's ``configs/``.

``configs/benchmarks.yaml`` holds the benchmark modes (:mod:`benchmarks.config`) and
``configs/hpo/<bundle>.yaml`` a bundle's hyper-parameter search space
(:mod:`radiobundles.slice2d.hpo`). Code reads them here, so a setting is changed in one
file, without touching Python.

Example:
    >>> load_settings("hpo/mri_slice_segmentation_2d.yaml")["search_space"]["loss"]["choices"]
    ['dice', 'cross_entropy', 'dice_ce']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from radiobundles.resources import configs_dir

__all__ = ["CONFIGS_DIR", "load_settings"]

CONFIGS_DIR = configs_dir()  # the checkout's configs/, the wheel's copy, or $RADIOBUNDLES_CONFIGS_DIR


def load_settings(name: str, configs_dir: str | Path = CONFIGS_DIR) -> dict[str, Any]:
    """The mapping in ``configs/<name>`` (YAML; JSON is YAML too).

    Raises:
        FileNotFoundError: no such file, naming the folder searched.
        ValueError: the file does not hold a mapping.
    """
    path = Path(configs_dir) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"no settings file {name!r} in {Path(configs_dir)}; the repository's configs/ holds them"
        )
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of settings, got {type(data).__name__}")
    return data
