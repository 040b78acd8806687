"""Every recipe's command line as a new user meets it: run from a directory
outside the checkout (the repository on ``PYTHONPATH``), ``--dump-config``
shows the options without any required input, also on top of a shipped
config file, and ``--help`` starts by saying what the recipe does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.recipes import REPO, recipe_env

RECIPES = ("extract_features", "stage1", "stage2", "generate", "evaluate", "eet")


def leaves(tree: object, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """The scalar values of a YAML tree by their path (lists are leaves)."""
    if isinstance(tree, dict):
        found: dict[tuple[str, ...], object] = {}
        for key, value in tree.items():
            found |= leaves(value, (*path, str(key)))
        return found
    return {path: tree}


def run(recipe: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"recipes.{recipe}", *args, "--no-rich"],
        cwd=cwd,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_dump_config_and_help_work_without_inputs(recipe: str, tmp_path: Path) -> None:
    shipped = REPO / f"recipes/{recipe}/configs/tiny.yaml"
    dumped = run(recipe, "--dump-config", "--config-file", str(shipped), cwd=tmp_path)
    assert dumped.returncode == 0, dumped.stdout[-2000:] + dumped.stderr[-2000:]
    # The shipped file's values, on top of the recipe's defaults.
    # Read as fairseq2 reads them (YAML 1.2: `off` is a string).
    dumped_values = leaves(YAML(typ="safe").load(dumped.stdout))
    shipped_values = leaves(YAML(typ="safe").load(shipped.read_text()))
    assert {path: dumped_values.get(path) for path in shipped_values} == shipped_values
    assert ("gang", "tensor_parallel_size") in dumped_values

    helped = run(recipe, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr[-2000:]
    description = helped.stdout.split("usage:")[0].strip()
    assert len(description.split()) >= 8, helped.stdout[:500]
    assert "--dump-config" in helped.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_a_run_without_input_names_the_missing_input(tmp_path: Path) -> None:
    done = run("generate", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode != 0
    assert "Give exactly one of `input.manifest`" in done.stdout + done.stderr
