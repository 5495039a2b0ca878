"""The wheel: its CLI, data layer and MONAI Label app work from an environment that is not the repository.

The environment holds the wheel's own dependency closure (``radiobundles[label]``) linked from the
running one (``tests/bundles/zoo_user.py``; nothing is downloaded); commands run outside the checkout,
so the shipped bundles and settings must come from the wheel's data files.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bundles.test_zoo_user import wheel  # noqa: F401  (the session fixture that builds it)
from tests.bundles.zoo_user import clean_environment

REPO = Path(__file__).resolve().parents[1]


def test_every_tracked_bundle_and_settings_file_is_in_the_data_files() -> None:
    """``[tool.setuptools.data-files]`` lists folders; a new folder must be added there."""
    import fnmatch

    import tomllib

    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    patterns = [p for pats in spec.values() for p in pats]
    tracked = subprocess.run(["git", "ls-files", "bundles", "configs"], cwd=REPO, capture_output=True, text=True).stdout
    missing = [
        f for f in tracked.split() if not f.endswith(".gitkeep") and not any(fnmatch.fnmatch(f, p) for p in patterns)
    ]
    assert not missing, f"add to [tool.setuptools.data-files] in pyproject.toml: {missing}"


@pytest.mark.slow
def test_cli_data_layer_and_app_work_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:  # noqa: F811
    from radiobject_adapter.synthetic import make_ct_dataset

    env = clean_environment(tmp_path / "venv", ["radiobundles[label]"], wheel)
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=2, shape_range=((16, 16), (16, 16), (8, 8)), seed=1)
    cli = str(env.root / "bin" / "radiobundles")

    def run(*cmd: str) -> str:
        proc = subprocess.run(list(cmd), cwd=tmp_path, env=env.environ, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    store = str(tmp_path / "store")
    run(cli, "ingest", store, "-c", f"CT={ds.images_dir}", "-c", f"seg={ds.labels_dir}", "--no-progress")
    assert "CT" in run(cli, "info", store)
    where = run(
        env.python,
        "-c",
        "import radiobundles, monailabel_app.main; from monailabel_app.lib.bundle import find_bundle; "
        "from radiobundles.settings import CONFIGS_DIR; "
        "print(radiobundles.__file__); print(find_bundle('ct_segmentation_3d', app_dir='/nonexistent/app')); print(CONFIGS_DIR)",
    )
    package, bundle, configs = where.strip().splitlines()[-3:]
    assert str(env.root) in package and str(REPO) not in package
    assert bundle.startswith(str(env.root)) and bundle.endswith("share/radiobundles/bundles/ct_segmentation_3d")
    assert configs.startswith(str(env.root))
