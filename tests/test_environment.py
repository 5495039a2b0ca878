"""The pinned stack imports together on CPU (the first thing that breaks on a bad lock)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "torch",
        "torchvision",
        "monai",
        "monailabel",
        "tiledb",
        "nibabel",
        "ignite",
        "tensorboard",
        "torchio",
        "tifffile",
    ],
)
def test_core_stack_imports(module: str) -> None:
    assert importlib.import_module(module).__name__ == module


def test_every_monailabel_task_module_imports() -> None:
    import monailabel.tasks

    names = [m.name for m in pkgutil.walk_packages(monailabel.tasks.__path__, "monailabel.tasks.")]
    assert "monailabel.tasks.infer.bundle" in names
    failures = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # report every failing module at once
            failures[name] = repr(err)
    assert not failures, failures


def test_torchvision_ops_run_next_to_torch() -> None:
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


def test_pinned_versions_match_lock() -> None:
    from importlib.metadata import version
    from pathlib import Path

    lock = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
    pins = dict(
        line.split("==", 1) for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")
    )
    for name in ("torch", "torchvision", "monai", "monailabel", "tiledb", "numpy"):
        assert version(name) == pins[name], f"{name} {version(name)} != lock {pins[name]}; run make install"
