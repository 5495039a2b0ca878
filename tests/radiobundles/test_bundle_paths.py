"""``find_bundle_root``: outputs go into the bundle folder from either working directory."""

from __future__ import annotations

import os

from radiobundles.bundle_paths import find_bundle_root


def make_bundle(path):
    os.makedirs(path / "configs")
    (path / "configs" / "metadata.json").write_text("{}")
    return path


def test_run_inside_the_bundle_uses_it(tmp_path):
    bundle = make_bundle(tmp_path / "my_bundle")
    assert find_bundle_root("my_bundle", cwd=str(bundle)) == str(bundle)


def test_run_from_the_repository_root_finds_bundles_name(tmp_path):
    bundle = make_bundle(tmp_path / "bundles" / "my_bundle")
    assert find_bundle_root("my_bundle", cwd=str(tmp_path)) == str(bundle)


def test_elsewhere_falls_back_to_the_working_directory(tmp_path):
    assert find_bundle_root("my_bundle", cwd=str(tmp_path)) == str(tmp_path)
