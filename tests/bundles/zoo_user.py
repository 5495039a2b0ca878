"""What a Model Zoo user has: the requirements a bundle's ``metadata.json`` declares, nothing else.

``zoo_requirements`` derives the pins as the zoo's ``ci/get_bundle_requirements.py`` does
(``monai_version``, ``pytorch_version``, ``numpy_version``, then ``optional_packages_version`` and
``required_packages_version``, each as ``name==version``). ``clean_environment`` makes a fresh
``venv`` (no pip, no system site-packages) whose site-packages links exactly the distributions of
those requirements' dependency closure, taken from the running environment, plus our wheel
installed with ``pip --no-deps --no-index``: nothing is downloaded, and a package that is not
declared (``monailabel``, ``torchvision``, ...) cannot be imported there.

Example:
    >>> env = clean_environment(tmp / "venv", zoo_requirements(meta), wheel)
    >>> subprocess.run([env.python, "-m", "monai.bundle", "run", ...], env=env.environ)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["CleanEnv", "clean_environment", "dependency_closure", "zoo_requirements"]

# our own package comes from the wheel under test, never from the running environment
OWN = canonicalize_name("radiobundles")


def zoo_requirements(metadata: dict[str, Any]) -> list[str]:
    """The pins the Model Zoo CI installs for a bundle (``ci/get_bundle_requirements.py``, ALLOW_MONAI_RC off)."""
    pins = []
    for key, name in (("monai_version", "monai"), ("pytorch_version", "torch"), ("numpy_version", "numpy")):
        if key in metadata:
            pins.append(f"{name}=={metadata[key]}")
    for key in ("optional_packages_version", "required_packages_version"):
        pins += [f"{name}=={version}" for name, version in metadata.get(key, {}).items()]
    return pins


def _requires(dist: md.Distribution, extras: set[str]) -> list[Requirement]:
    out = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({**default_environment(), "extra": e}) for e in extras | {""}):
            out.append(req)
    return out


def dependency_closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """The installed distributions that ``requirements`` need, transitively (extras followed).

    Raises:
        md.PackageNotFoundError: a required distribution is not installed here.
    """
    found: dict[str, md.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        if name == OWN:
            own = md.distribution(req.name)
            todo += _requires(own, set(req.extras))
            continue
        dist = found.get(name) or md.distribution(req.name)
        found[name] = dist
        todo += _requires(dist, set(req.extras))
    return found


def _top_levels(dist: md.Distribution) -> set[str]:
    """The names in site-packages that a distribution installed (packages, modules, its .dist-info)."""
    names = set()
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if parts and parts[0] not in ("..", "__pycache__") and not parts[0].endswith(".pth"):
            names.add(parts[0])
    return names


@dataclasses.dataclass
class CleanEnv:
    """A fresh interpreter environment: run ``python`` with ``environ`` (no PYTHONPATH)."""

    root: Path
    python: str
    environ: dict[str, str]
    distributions: dict[str, str]  # canonical name -> version linked in


def clean_environment(root: Path, requirements: list[str], wheel: Path) -> CleanEnv:
    """A venv at ``root`` holding the closure of ``requirements`` and ``wheel`` (installed, no deps)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = str(root / "bin" / "python")
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    closure = dependency_closure(requirements)
    source = Path(md.distribution("monai").locate_file(""))
    for dist in closure.values():
        for name in _top_levels(dist):
            target = site / name
            if not target.exists() and (source / name).exists():
                target.symlink_to(source / name)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    environ["PATH"] = f"{root / 'bin'}{os.pathsep}{environ.get('PATH', '')}"
    # pip itself is not part of the environment: it runs from a folder holding only pip, for this one install
    pip_only = root.parent / f"{root.name}-pip"
    pip_only.mkdir(exist_ok=True)
    if not (pip_only / "pip").exists():
        (pip_only / "pip").symlink_to(Path(md.distribution("pip").locate_file("pip")))
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "--quiet", str(wheel)],
        check=True,
        env={**environ, "PYTHONPATH": str(pip_only)},
    )
    return CleanEnv(root, python, environ, {n: d.version for n, d in closure.items()})
