"""One base class for the errors radiobundles raises on purpose, defined in one module."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import radiobject_adapter
from radiobject_adapter import errors
from radiobject_adapter.errors import RadiobundlesError

# where users have imported each error from: these names must stay the same objects
OLD_HOMES = {
    "IngestError": ["radiobject_adapter", "radiobject_adapter.io.ingest"],
    "StoreNotFoundError": ["radiobject_adapter", "radiobject_adapter.store.radiobject"],
    "StoreLocationError": ["radiobject_adapter.store.preflight"],
    "FormatVersionError": ["radiobject_adapter", "radiobject_adapter.store.layout"],
    "VolumeReadError": ["radiobject_adapter", "radiobject_adapter.volume"],
    "S3EnvError": ["radiobject_adapter.s3env"],
    "DicomSeriesError": ["radiobject_adapter.io.dicom_geometry"],
}


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_has_the_one_base_class(name: str) -> None:
    assert issubclass(getattr(errors, name), RadiobundlesError)


@pytest.mark.parametrize("name", sorted(OLD_HOMES))
def test_errors_stay_importable_where_users_import_them(name: str) -> None:
    for module in OLD_HOMES[name]:
        assert getattr(importlib.import_module(module), name) is getattr(errors, name), module


def test_errors_keep_their_builtin_types() -> None:
    # existing `except ValueError` / `except FileNotFoundError` code keeps catching them
    assert issubclass(errors.IngestError, ValueError)
    assert issubclass(errors.LabelError, ValueError)
    assert issubclass(errors.StoreNotFoundError, FileNotFoundError)
    assert issubclass(errors.VolumeReadError, OSError)
    assert issubclass(errors.FormatVersionError, RuntimeError)


def test_a_missing_store_is_caught_by_the_base_class(tmp_path: Path) -> None:
    with pytest.raises(RadiobundlesError, match="store"):
        radiobject_adapter.RadiObject(str(tmp_path / "absent"))


def test_error_classes_are_defined_only_in_errors_module() -> None:
    # a new error class elsewhere must at least derive from the base (test helpers do)
    root = Path(radiobject_adapter.__file__).parent
    strays = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if "RadiobundlesError" not in bases:
                    strays.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    assert not strays, f"error classes outside radiobject_adapter/errors.py without the base: {strays}"
