"""Running ``speechmapper COMMAND ...`` in the test's own process: one import
of torch and fairseq2 for several quick recipe runs (a config dump, a run
refused at its checks, an export) instead of a fresh process each, which on
the 2-core test machine costs more than the run itself."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from unittest import mock

from recipes.cli import main as speechmapper_main

_ENV = {"FAIRSEQ2_NO_PROGRESS": "1", "FAIRSEQ2_DEVICE": "cpu"}
"""What :func:`tests.support.recipes.recipe_env` gives a recipe process."""


def run_speechmapper(*argv: str) -> tuple[int, str]:
    """``speechmapper ARGV`` here (a recipe: pass ``--no-rich``): its exit code
    and its stdout and stderr together. fairseq2's command line replaces the root logger's
    handlers and turns deprecation warnings on: both are given back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    output = StringIO()
    try:
        with (
            mock.patch.dict(os.environ, _ENV),
            warnings.catch_warnings(),
            redirect_stdout(output),
            redirect_stderr(output),
        ):
            code = speechmapper_main(list(argv))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, output.getvalue()
