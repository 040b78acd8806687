"""Running the plugin's recipes the way users do: ``python -m recipes.<name>``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def recipe_env(**extra: str) -> dict[str, str]:
    """The environment of a recipe subprocess.

    One OpenMP thread: multi-threaded CPU kernels may sum in a different order
    from run to run (so "same seed, same weights" would not hold), and several
    recipe processes (torchrun) would oversubscribe the cores.
    """
    return {
        "OMP_NUM_THREADS": "1",
        **os.environ,
        "FAIRSEQ2_NO_PROGRESS": "1",
        "FAIRSEQ2_DEVICE": "cpu",
        "PYTHONPATH": str(REPO),
        **extra,
    }


def run_with_installed_plugin(script: str, *args: str, cwd: Path) -> None:
    """Run a Python script in a fresh process that sees only the installed
    plugin (no repository path on ``PYTHONPATH``), with one OpenMP thread;
    fails the test with the end of its stderr if it exits with an error."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"OMP_NUM_THREADS": "1", "FAIRSEQ2_NO_PROGRESS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def run_python(*args: str, timeout: int = 300) -> str:
    """``python ARGS`` (``-m MODULE ...`` or ``-c SCRIPT ...``) from the
    repository root in a recipe's environment; its stdout. Fails the test
    with the end of its stderr if it exits with an error."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_module(module: str, *args: str, timeout: int = 300) -> str:
    """``python -m MODULE ARGS`` as :func:`run_python` runs it."""
    return run_python("-m", module, *args, timeout=timeout)


def recipe_command(recipe: str, out: Path, *args: str, nproc: int = 1) -> list[str]:
    """``python -m recipes.<recipe> OUT ARGS``, or under ``torchrun`` on
    ``nproc`` CPU processes (gloo)."""
    if nproc == 1:
        launcher = [sys.executable, "-m"]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        launcher = [str(torchrun), "--standalone", "--nproc-per-node", str(nproc), "-m"]
    return [*launcher, f"recipes.{recipe}", str(out), *args, "--no-rich"]


def run_recipe(
    recipe: str,
    out: Path,
    *args: str,
    nproc: int = 1,
    check: bool = True,
    timeout: int = 600,
) -> subprocess.CompletedProcess[str]:
    """Runs a recipe to completion; with ``check``, a failure shows its output."""
    done = subprocess.run(
        recipe_command(recipe, out, *args, nproc=nproc),
        cwd=REPO,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def read_metrics(out: Path, name: str) -> list[dict[str, Any]]:
    """The records fairseq2's JSONL recorder wrote to ``metrics/<name>.jsonl``."""
    path = out / "metrics" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
