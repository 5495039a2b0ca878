"""``radiobundles.resources``: the shipped bundles and settings are found without source-tree paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from radiobundles.resources import BUNDLES_ENV, bundle_path, bundles_dir, configs_dir


def test_the_checkout_bundles_and_configs_are_found() -> None:
    assert (bundles_dir() / "ct_segmentation_3d" / "configs" / "metadata.json").is_file()
    assert (configs_dir() / "hpo").is_dir()


def test_the_environment_variable_points_at_other_bundles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(bundles_dir() / "ct_segmentation_3d" / "configs", tmp_path / "ct_segmentation_3d" / "configs")
    monkeypatch.setenv(BUNDLES_ENV, str(tmp_path))
    assert bundle_path("ct_segmentation_3d") == tmp_path / "ct_segmentation_3d"


def test_an_unknown_bundle_names_the_bundles_that_are_there() -> None:
    with pytest.raises(FileNotFoundError, match="ct_segmentation_3d"):
        bundle_path("no_such_bundle")
