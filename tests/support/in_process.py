"""Running recipes in the test's own process: one import of torch and fairseq2
for several recipe runs instead of a fresh process each, which on the 2-core
test machine costs more than a tiny run itself (~10 s of imports, ~1 s of
work)."""

from __future__ import annotations

import json
import logging
import os
import random
import runpy
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import IO, Any
from unittest import mock

import numpy as np
import torch
from fairseq2.models.transformer.sdpa.default import (
    get_default_sdpa_factory,
    set_default_sdpa_factory,
)

from recipes.cli import main as speechmapper_main
from tests.support.recipes import REPO, recipe_env

_ENV = {"FAIRSEQ2_NO_PROGRESS": "1", "FAIRSEQ2_DEVICE": "cpu"}
"""What :func:`tests.support.recipes.recipe_env` gives a recipe process."""


@contextmanager
def recipe_process_state(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """What a recipe run changes in its process, given back afterwards: the
    root logger's handlers (fairseq2's command line replaces them), warning
    filters, the environment (``env`` replaces it meanwhile), torch's thread
    count, the random generators and fairseq2's default SDPA."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    num_threads = torch.get_num_threads()
    torch_rng = torch.get_rng_state()
    python_rng = random.getstate()
    numpy_rng = np.random.get_state()
    sdpa = get_default_sdpa_factory()
    patched = (
        mock.patch.dict(os.environ, env, clear=True)
        if env is not None
        else mock.patch.dict(os.environ, _ENV)
    )
    try:
        with patched, warnings.catch_warnings():
            yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        torch.set_num_threads(num_threads)
        torch.set_rng_state(torch_rng)
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)
        set_default_sdpa_factory(sdpa)


def run_speechmapper(*argv: str) -> tuple[int, str]:
    """``speechmapper ARGV`` here (a recipe: pass ``--no-rich``): its exit code
    and its stdout and stderr together."""
    output = StringIO()
    with recipe_process_state(), redirect_stdout(output), redirect_stderr(output):
        code = speechmapper_main(list(argv))
    return code, output.getvalue()


def run_recipe_command(
    command: Sequence[str], *, env: Mapping[str, str], output: IO[str]
) -> int:
    """``python -m recipes.NAME ARGS`` here, its output to ``output``: its
    exit code."""
    if list(command[:2]) != [sys.executable, "-m"] or not command[2].startswith(
        "recipes."
    ):
        raise ValueError(f"Not a one-process recipe command: {list(command)}")
    module, args = command[2], list(command[3:])
    saved = sys.argv
    sys.argv = [module, *args]
    try:
        with (
            recipe_process_state(env),
            redirect_stdout(output),
            redirect_stderr(output),
        ):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as ex:
        return ex.code if isinstance(ex.code, int) else (0 if ex.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def in_process_run(
    command: Sequence[str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """A stand-in for ``subprocess.run`` of a recipe step whose ``stdout`` is
    an open file (:func:`recipes.runs.run_steps`): the step runs here."""
    code = run_recipe_command(command, env=kwargs["env"], output=kwargs["stdout"])
    return subprocess.CompletedProcess(list(command), code)


_RUN_ALL = """
import json, sys
from tests.support.in_process import run_speechmapper
results = []
for argv in json.loads(open(sys.argv[1]).read()):
    code, output = run_speechmapper(*argv)
    results.append([code, output])
    with open(sys.argv[2], "w") as fp:
        json.dump(results, fp)
"""


def run_speechmapper_commands(
    commands: Sequence[Sequence[str]], *, timeout: int = 900
) -> list[tuple[int, str]]:
    """Each ``speechmapper ARGV`` of ``commands`` in turn, all in one fresh
    process (the repository on its path, one OpenMP thread, as
    :func:`tests.support.recipes.run_recipe`): their exit codes and outputs.
    A run that needs an earlier one's output comes after it."""
    with tempfile.TemporaryDirectory() as tmp:
        given, results = Path(tmp) / "commands.json", Path(tmp) / "results.json"
        given.write_text(json.dumps([list(argv) for argv in commands]))
        done = subprocess.run(
            [sys.executable, "-c", _RUN_ALL, str(given), str(results)],
            cwd=REPO,
            env=recipe_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        ran = json.loads(results.read_text()) if results.exists() else []
    if len(ran) < len(commands):
        raise AssertionError(
            f"{len(ran)} of {len(commands)} commands ran before the process ended (exit code {done.returncode}): {done.stderr[-3000:]}"
        )
    return [(code, output) for code, output in ran]
