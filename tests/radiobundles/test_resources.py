"""``radiobundles.resources``: the shipped bundles and settings are found without source-tree paths."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from radiobundles.resources import BUNDLES_ENV, bundle_environ, bundle_path, bundle_scripts, bundles_dir, configs_dir


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


def _write_scripts(folder: Path, marker: str) -> Path:
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "__init__.py").write_text(f"NAME = {marker!r}\n")
    (folder / "scripts" / "thing.py").write_text("from . import NAME\nWHO = NAME + '.thing'\n")
    return folder


def test_each_bundle_gets_its_own_scripts_and_what_was_imported_before_comes_back(tmp_path: Path) -> None:
    one, two = _write_scripts(tmp_path / "one", "one"), _write_scripts(tmp_path / "two", "two")
    before = types.ModuleType("scripts")  # e.g. a bundle MONAI Label or another test imported
    sys.modules["scripts"] = before
    try:
        with bundle_scripts(one) as package:
            assert package.NAME == "one" and importlib.import_module("scripts.thing").WHO == "one.thing"
            thing = sys.modules["scripts.thing"]
        assert sys.modules["scripts"] is before and "scripts.thing" not in sys.modules
        with bundle_scripts(two):
            assert importlib.import_module("scripts.thing").WHO == "two.thing"  # not one's, cached
        assert str(one) not in sys.path and str(two) not in sys.path
        assert thing.WHO == "one.thing"  # objects made inside keep working
    finally:
        sys.modules.pop("scripts", None)


def test_a_bundle_without_scripts_yields_none(tmp_path: Path) -> None:
    with bundle_scripts(tmp_path) as package:
        assert package is None


def test_a_process_started_elsewhere_imports_the_bundles_scripts(tmp_path: Path) -> None:
    bundle = _write_scripts(tmp_path / "bundle", "mine")
    code = "import scripts.thing; print(scripts.thing.WHO)"
    env = bundle_environ(bundle, {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(":") == [str(bundle), "/elsewhere"]
    done = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "mine.thing", done.stderr
