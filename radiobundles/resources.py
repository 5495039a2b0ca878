"""Where the shipped bundles and settings files are: a repository checkout or an installed wheel.

The wheel carries ``bundles/`` and ``configs/`` as data files under ``<prefix>/share/radiobundles/``
(``pyproject.toml``, ``[tool.setuptools.data-files]``); a checkout has them beside the packages.
An environment variable points elsewhere (a user's own bundles, a copy being edited):

=============================  ==========================================
``RADIOBUNDLES_BUNDLES_DIR``   folder holding ``<bundle name>/configs/...``
``RADIOBUNDLES_CONFIGS_DIR``   folder holding the settings YAML files
=============================  ==========================================

A bundle's own code is its ``scripts`` package (Model Zoo layout), which its configs name as
``scripts.…``: :func:`bundle_scripts` makes that name mean one bundle's package while a config
is parsed or run in this process (the HPO driver, tests), as MONAI Label does for the bundles it
serves, so two bundles' ``scripts`` never shadow each other. :func:`bundle_environ` does the same
for a ``python -m monai.bundle`` process started from another folder (MONAI itself adds the bundle
folder to ``sys.path`` only when ``run`` starts, after ``initialize`` may have needed it).

Example:
    >>> bundle_path("ct_segmentation_3d")
    PosixPath('/work/radiobundles/bundles/ct_segmentation_3d')
    >>> with bundle_scripts(bundle_path("mri_slice_segmentation_2d")) as scripts:
    ...     ConfigWorkflow(config_file=".../train.json", workflow_type="train").run()
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

__all__ = [
    "BUNDLES_ENV",
    "CONFIGS_ENV",
    "bundle_environ",
    "bundle_path",
    "bundle_scripts",
    "bundles_dir",
    "configs_dir",
]

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


def _scripts_modules() -> list[str]:
    return [k for k in sys.modules if k == "scripts" or k.startswith("scripts.")]


@contextmanager
def bundle_scripts(bundle: str | os.PathLike) -> Iterator[ModuleType | None]:
    """Within the block, ``import scripts`` (and a config's ``scripts.…``) is ``bundle``'s own package.

    The bundle folder goes first on ``sys.path`` and any ``scripts`` modules already imported
    (another bundle's) leave ``sys.modules``; on exit both are put back as they were, so the
    bundle's modules do not shadow another bundle's afterwards (objects made inside keep working).

    Yields:
        the bundle's ``scripts`` package, or ``None`` for a bundle without one.
    """
    folder = str(Path(bundle).resolve())
    saved = {k: sys.modules.pop(k) for k in _scripts_modules()}
    sys.path.insert(0, folder)
    try:
        has_scripts = os.path.isfile(os.path.join(folder, "scripts", "__init__.py"))
        yield importlib.import_module("scripts") if has_scripts else None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
        for k in _scripts_modules():
            del sys.modules[k]
        sys.modules.update(saved)


def bundle_environ(bundle: str | os.PathLike, environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with the bundle folder first on ``PYTHONPATH``.

    A ``python -m monai.bundle run`` (or ``torchrun``) started with it imports the bundle's own
    ``scripts`` package from any working directory, as when run from the bundle folder.

    Example:
        >>> subprocess.run([sys.executable, "-m", "monai.bundle", "run", ...], env=bundle_environ(folder))
    """
    env = dict(os.environ if environ is None else environ)
    folder = str(Path(bundle).resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH", "")) if p)
    return env
