"""The package's layers: nothing imports a layer above its own.

The ground (model families, frame and length rules, input checks, losses,
metrics, decoding, checkpoint reading) depends on fairseq2 and torch only;
above it the on-disk formats and the dataset families; above those the
applications (pipeline, feature extraction, export, evaluation); the toy
assets and the quickstart on top; the recipes and the ``speechmapper`` command
(``recipes/cli.py``, which dispatches to them) above the whole package. Every
import counts, including those inside functions: a deferred import still makes
the lower layer need the upper one. Recipes share through the top-level modules
of ``recipes/`` (``recipes.common``, ``recipes.runs``...) or the package, never
through another recipe.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PACKAGE = "speechmapper_plugin"

LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "validation",
        "checkpoints",
        "input_checks",
        "audio",
        "metrics",
        "atomic_files",
        "padding",
    ),
    ("models",),
    ("llm",),
    ("losses",),
    ("generation",),
    ("data",),
    ("datasets",),
    ("speech_llm", "export", "extraction", "extension"),
    ("evaluation", "generation_task"),
    ("serving",),
    ("demo",),
    ("tiny_assets",),
    ("quickstart",),
)
"""From the ground up; the parts of one layer may import each other (the
import-cycle test keeps them from going round)."""

RANK: Mapping[str, int] = {
    part: rank for rank, parts in enumerate(LAYERS) for part in parts
}


def _imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in ``path``, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _part(module: str) -> str | None:
    """The layer part of a ``speechmapper_plugin`` module (``data``, ``llm``...)."""
    names = module.split(".")
    if names[0] != PACKAGE or len(names) < 2:
        return None
    return names[1]


def upward_imports(root: Path) -> list[str]:
    """``file:line part -> module`` for each import of a higher layer."""
    found = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        relative = path.relative_to(root / PACKAGE)
        if relative.parts == ("__init__.py",):
            continue  # the package's face re-exports the plugin entry point
        own = relative.parts[0].removesuffix(".py")
        for line, module in _imported_modules(path):
            target = _part(module)
            if target is None or target == own:
                continue
            if target not in RANK or own not in RANK:
                found.append(f"{path}:{line} unplaced part: {own} -> {module}")
            elif RANK[target] > RANK[own]:
                found.append(f"{path}:{line} {own} -> {module}")
    return found


def cross_recipe_imports(root: Path) -> list[str]:
    """``file:line`` for each module of ``recipes/<a>/`` importing ``recipes.<b>``.

    The top-level modules of ``recipes/`` (``common``, ``runs``...) are the
    shared places."""
    shared = {"common"} | {path.stem for path in (root / "recipes").glob("*.py")}
    found = []
    for path in sorted((root / "recipes").rglob("*.py")):
        relative = path.relative_to(root / "recipes")
        if len(relative.parts) < 2:
            continue  # recipes/common.py, recipes/__init__.py
        own = relative.parts[0]
        for line, module in _imported_modules(path):
            names = module.split(".")
            if names[0] == "recipes" and len(names) > 1:
                if names[1] != own and names[1] not in shared:
                    found.append(f"{path}:{line} {own} -> {module}")
    return found


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {
        path.name.removesuffix(".py")
        for path in (REPO / PACKAGE).iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.name != "__init__.py")
    }
    assert parts - set(RANK) == set()


def test_no_import_runs_up_the_layers() -> None:
    assert upward_imports(REPO) == []


def test_no_recipe_imports_another_recipe() -> None:
    assert cross_recipe_imports(REPO) == []


def test_the_ground_stands_on_fairseq2_and_torch_alone() -> None:
    """The named case of the layering: losses reach none of decoding, the
    pipeline, the formats or the datasets."""
    imported = {
        _part(module)
        for path in (REPO / PACKAGE / "losses").rglob("*.py")
        for _, module in _imported_modules(path)
    }
    assert imported.isdisjoint({"generation", "speech_llm", "data", "datasets"})


def _plant(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    "files, expected",
    [
        (  # a deferred import of the data layer inside a loss
            {
                f"{PACKAGE}/losses/mse.py": "def f():\n    from speechmapper_plugin.data.manifest import X\n",
                f"{PACKAGE}/data/manifest.py": "X = 1\n",
            },
            "losses -> speechmapper_plugin.data.manifest",
        ),
        (  # a new top-level part nobody placed
            {f"{PACKAGE}/models/m.py": "from speechmapper_plugin.newpart import y\n"},
            "unplaced part: models -> speechmapper_plugin.newpart",
        ),
    ],
)
def test_a_planted_upward_import_is_found(
    tmp_path: Path, files: Mapping[str, str], expected: str
) -> None:
    _plant(tmp_path, files)
    found = upward_imports(tmp_path)
    assert len(found) == 1 and found[0].endswith(expected), found


def test_a_planted_downward_import_is_allowed(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {f"{PACKAGE}/datasets/d.py": "from speechmapper_plugin.models.m import y\n"},
    )
    assert upward_imports(tmp_path) == []


def test_a_planted_cross_recipe_import_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "recipes/stage2/units.py": "from recipes.stage1.units import U\nfrom recipes.common import C\nfrom recipes.stage2.config import K\n",
        },
    )
    found = cross_recipe_imports(tmp_path)
    assert len(found) == 1 and found[0].endswith("stage2 -> recipes.stage1.units")
