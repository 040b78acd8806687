"""Running the quickstart's steps: numbered progress, timings, logs, failures.

Recipes run as subprocesses, exactly the commands a user types; the light
command-line tools (manifest validation, instruction files) run their ``main``
in this process. Each step's log starts with its command line, so any step
can be rerun by hand.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO, TypeVar

from speechmapper_plugin.quickstart.layout import QuickstartError, QuickstartLayout

T = TypeVar("T")

LOG_TAIL_LINES: Final = 25


class StepFailed(QuickstartError):
    """A step's command exited with an error."""

    def __init__(self, title: str, returncode: int, log: Path, tail: str) -> None:
        super().__init__(
            f"{title} failed (exit code {returncode}). Its full log: {log}\nLast lines of the log:\n{tail}"
        )
        self.log = log
        self.returncode = returncode


@dataclass(frozen=True)
class StepRecord:
    name: str
    title: str
    seconds: float
    log: Path | None = None
    command: tuple[str, ...] | None = None
    skipped: bool = False
    """Finished in an earlier run (``seconds`` is that run's)."""


@dataclass
class StepRunner:
    """Runs numbered steps, printing progress and keeping their timings."""

    logs: Path

    num_steps: int

    env: Mapping[str, str]
    """The environment of subprocesses."""

    cwd: Path
    """The working directory of subprocesses (the repository root)."""

    echo: Callable[[str], None] = print

    layout: QuickstartLayout | None = None
    """Where finished steps are recorded; a step recorded there is skipped
    (resuming an interrupted run)."""

    records: list[StepRecord] = field(default_factory=list)

    def skip_if_done(self, name: str, title: str) -> bool:
        """Whether ``name`` finished in an earlier run (then it is recorded
        with its earlier time and announced as skipped)."""
        if self.layout is None or not self.layout.is_done(name):
            return False
        seconds = self.layout.done_seconds(name)
        self.echo(
            f"[{len(self.records) + 1}/{self.num_steps}] {title}: done earlier, skipped"
        )
        self.records.append(StepRecord(name, title, seconds, skipped=True))
        return True

    def call(self, name: str, title: str, fn: Callable[[], T]) -> T:
        """Run an in-process step (always: its value is needed)."""
        start = self._begin(title)
        value = fn()
        self._end(StepRecord(name, title, time.monotonic() - start))
        return value

    def call_once(self, name: str, title: str, fn: Callable[[], object]) -> None:
        """Run an in-process step unless it finished in an earlier run."""
        if self.skip_if_done(name, title):
            return
        start = self._begin(title)
        fn()
        self._end(StepRecord(name, title, time.monotonic() - start))

    def run(self, name: str, title: str, command: Sequence[str]) -> StepRecord:
        """Run ``command`` in a subprocess, its output in ``logs/NN_name.log``.

        :raises StepFailed: if it exits with an error.
        """

        def execute(fp: TextIO) -> int:
            done = subprocess.run(
                list(command),
                cwd=self.cwd,
                env=dict(self.env),
                stdout=fp,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            return done.returncode

        return self._logged(name, title, command, execute)

    def run_main(
        self,
        name: str,
        title: str,
        module: str,
        main: Callable[[Sequence[str]], int],
        args: Sequence[str],
    ) -> StepRecord:
        """Run the command-line tool ``python -m module args`` in this process
        (its ``main``: the same code without another interpreter start-up),
        its output in ``logs/NN_name.log``.

        :raises StepFailed: if it exits with an error.
        """

        def execute(fp: TextIO) -> int:
            with redirect_stdout(fp), redirect_stderr(fp):
                try:
                    return main(list(args))
                except SystemExit as ex:
                    if ex.code is None or isinstance(ex.code, int):
                        return ex.code or 0
                    print(ex.code)
                    return 1

        command = (sys.executable, "-m", module, *args)
        return self._logged(name, title, command, execute)

    def _logged(
        self,
        name: str,
        title: str,
        command: Sequence[str],
        execute: Callable[[TextIO], int],
    ) -> StepRecord:
        log = self.logs / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if self.skip_if_done(name, title):
            return self.records[-1]

        start = self._begin(title)
        with log.open("w", encoding="utf-8") as fp:
            fp.write(f"$ cd {shlex.quote(str(self.cwd))} && {shlex.join(command)}\n\n")
            fp.flush()
            returncode = execute(fp)

        if returncode != 0:
            raise StepFailed(title, returncode, log, read_tail(log))

        record = StepRecord(name, title, time.monotonic() - start, log, tuple(command))
        self._end(record)
        return record

    def _begin(self, title: str) -> float:
        self.echo(f"[{len(self.records) + 1}/{self.num_steps}] {title} ...")
        return time.monotonic()

    def _end(self, record: StepRecord) -> None:
        self.records.append(record)
        if self.layout is not None:
            self.layout.mark_done(record.name, record.seconds)
        where = f" (log: {record.log})" if record.log is not None else ""
        self.echo(f"      done in {record.seconds:.1f} s{where}")


def read_tail(log: Path, num_lines: int = LOG_TAIL_LINES) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(f"  | {line}" for line in lines[-num_lines:])


def subprocess_env(repo: Path) -> dict[str, str]:
    """The environment of every step: offline, quiet, on the CPU and on one
    thread unless the user chose otherwise, with the repository on
    ``PYTHONPATH`` for ``recipes``.

    One thread: the tiny models gain little from more (stage 1: 27 s with
    two threads, 31 s with one, on an idle 2-core machine), but multi-threaded
    runs on a busy machine slow down tenfold and more (OpenMP threads waiting
    on each other), while a single thread just shares the CPU.
    """
    env = dict(os.environ)
    python_path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = (
        str(repo) if not python_path else f"{repo}{os.pathsep}{python_path}"
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("FAIRSEQ2_DEVICE", "cpu")
    env.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env
