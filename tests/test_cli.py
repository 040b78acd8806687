"""The ``speechmapper`` command: every recipe and tool, from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipes.cli import SUBCOMMANDS, main

REPO = Path(__file__).resolve().parents[1]

RECIPES = ("extract", "stage1", "stage2", "generate", "evaluate", "eet")
"""The fairseq2 recipes (``--dump-config`` prints their whole configuration)."""


def run_outside(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` in ``cwd`` with only the installed package to import (no
    repository on ``PYTHONPATH``), the way a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"OMP_NUM_THREADS": "1", "FAIRSEQ2_NO_PROGRESS": "1"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty directory outside the checkout."""
    assert not tmp_path.resolve().is_relative_to(REPO)
    return tmp_path


def speechmapper() -> str:
    path = Path(sys.executable).with_name("speechmapper")
    assert path.is_file(), "`pip install -e .` installs the `speechmapper` command"
    return str(path)


def test_every_recipe_has_a_subcommand() -> None:
    """A new recipe under recipes/ needs its subcommand."""
    recipes = {
        f"recipes.{path.parent.name}"
        for path in (REPO / "recipes").glob("*/__main__.py")
    }
    assert recipes <= {sub.module for sub in SUBCOMMANDS.values()}


def test_help_lists_every_subcommand_from_any_directory(elsewhere: Path) -> None:
    for command in ([speechmapper()], [sys.executable, "-m", "recipes.cli"]):
        done = run_outside([*command, "--help"], elsewhere)
        assert done.returncode == 0, done.stderr
        for name, sub in SUBCOMMANDS.items():
            assert f"  {name}" in done.stdout and sub.summary in done.stdout
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_dumps_its_config_from_any_directory(elsewhere: Path, name: str) -> None:
    done = run_outside([speechmapper(), name, "--dump-config"], elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load(done.stdout)
    assert isinstance(config, dict) and "common" in config
    assert list(elsewhere.iterdir()) == []
    assert "\n\n" not in done.stderr and not done.stderr.startswith("\n")


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_subcommand_shows_its_help(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: " in out
    if name in RECIPES:  # fairseq2 names the program after sys.argv[0]
        assert f"usage: speechmapper {name} " in out


def test_arguments_reach_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.tsv"
    manifest.write_text("id\taudio\n")
    assert main(["validate", str(manifest)]) == 2
    assert "lacks required column(s) transcript" in capsys.readouterr().err


def test_an_unknown_subcommand_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["stage3"])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'stage3'" in err and "'stage1'" in err


def test_sys_argv_is_restored(capsys: pytest.CaptureFixture[str]) -> None:
    before = list(sys.argv)
    main(["export", "--help"])
    assert sys.argv == before
