"""The modules of radiobject_adapter import each other without a cycle.

A cycle (``address`` formats what ``store.radiobject`` opens, and each imported the other)
means neither module can be read, tested or moved alone. The graph is read from the source
with :mod:`ast`, so it holds every import a module can run: top-level ones and those deferred
into functions (a deferred import still ties the two modules together). Imports under
``if TYPE_CHECKING:`` never run and are left out; so are a package face's lazy names
(PEP 562 strings), since importing a submodule never runs them.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import radiobject_adapter

PACKAGE = "radiobject_adapter"
ROOT = Path(radiobject_adapter.__file__).parent


def _module_files() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of this package it imports`` (``from pkg import submodule`` counts
    as importing the submodule)."""
    modules = _module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(name, is_package, node)
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_graph_sees_deferred_imports() -> None:
    # the reader cannot pass vacuously: known edges, top-level and inside a function, are found
    graph = import_graph()
    assert "radiobject_adapter.store.layout" in graph["radiobject_adapter.volume"]
    assert "radiobject_adapter.store.build" in graph["radiobject_adapter.volume"]  # deferred
    assert len(graph) > 40


def test_a_cycle_is_reported() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    with pytest.raises(CycleError):
        TopologicalSorter(graph).prepare()


def test_radiobject_adapter_has_no_import_cycle() -> None:
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as err:
        cycle = " -> ".join(err.args[1])
        pytest.fail(f"import cycle: {cycle}; move what both modules need into a third, lower one")
