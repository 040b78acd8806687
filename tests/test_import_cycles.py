"""No import cycle in the package or the recipes.

A cycle works or fails depending on which module is imported first, and hides
that one concept has no single home. Counted: imports that run when a module is
imported (module level, including inside ``try`` and ``if`` blocks) except
those under ``if TYPE_CHECKING:``. Imports inside functions are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PACKAGES = ("speechmapper_plugin", "recipes")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _eager_imports(body: Sequence[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _eager_imports(node.body)
            yield from _eager_imports(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _eager_imports(node.body)
            yield from _eager_imports(node.orelse)
            yield from _eager_imports(node.finalbody)
            for handler in node.handlers:
                yield from _eager_imports(handler.body)


def import_graph(root: Path, packages: Sequence[str]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports when it is imported.

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else
    at ``pkg`` (its ``__init__``).
    """
    files = {
        _module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }

    graph: dict[str, set[str]] = {}

    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()

        for node in _eager_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module = alias.name
                    while module and module not in files:
                        module = module.rpartition(".")[0]
                    if module:
                        targets.add(module)
                continue

            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""

            for alias in node.names:
                if f"{module}.{alias.name}" in files:
                    targets.add(f"{module}.{alias.name}")
                elif module in files:
                    targets.add(module)

        targets.discard(name)
        graph[name] = targets

    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)

        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])

        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)

    return cycles


def test_no_import_cycle_in_the_package_and_recipes() -> None:
    graph = import_graph(REPO, PACKAGES)

    assert len(graph) > 100  # the walk found the tree
    assert (
        "speechmapper_plugin.data.manifest"
        in graph["speechmapper_plugin.data.manifest_tsv"]
    )  # and follows imports

    cycles = find_cycles(graph)

    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # a direct cycle through absolute imports
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from pkg.b import x\n",
                "pkg/b.py": "import pkg.a\nx = 1\n",
            },
            [["pkg.a", "pkg.b"]],
        ),
        (  # through relative imports, a package __init__ and a try block
            {
                "pkg/__init__.py": "from .sub import y as y\n",
                "pkg/sub/__init__.py": "try:\n    from ..c import z\nexcept ImportError:\n    z = 0\ny = z\n",
                "pkg/c.py": "from pkg import y\nz = 1\n",
            },
            [["pkg", "pkg.c", "pkg.sub"]],
        ),
        (  # TYPE_CHECKING-only and function-level imports are not cycles
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import x\n",
                "pkg/b.py": "import pkg.a\nx = 1\ndef f():\n    from pkg.a import q\n",
            },
            [],
        ),
    ],
)
def test_cycle_finder_on_planted_packages(
    tmp_path: Path, files: Mapping[str, str], expected: list[list[str]]
) -> None:
    _write(tmp_path, files)

    assert find_cycles(import_graph(tmp_path, ["pkg"])) == expected
