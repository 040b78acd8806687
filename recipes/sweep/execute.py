"""Running a sweep's steps as recipe subprocesses, skipping finished ones.

A step is finished when its ``sweep_step.json`` marker exists (written after
the recipe exits with 0). A step that was interrupted has no marker and runs
again in the same directory, where fairseq2 resumes training from the last
checkpoint and the evaluate recipe scores only the missing utterances. A
failed step is reported and the steps that need it are not run; the others go on.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recipes.sweep.plan import SweepStep

MARKER = "sweep_step.json"

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SweepProgress:
    ran: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    """Finished in an earlier invocation."""

    failed: dict[Path, str] = field(default_factory=dict)
    """Step dir -> what went wrong (the log to read)."""

    blocked: list[Path] = field(default_factory=list)
    """Not run because a step they need failed."""


def is_finished(step: SweepStep) -> bool:
    """Finished with this very command; a marker from another command is an error."""
    marker = step.out_dir / MARKER
    if not marker.is_file():
        return False

    recorded = json.loads(marker.read_text()).get("command")
    if recorded != step.command:
        raise ValueError(
            f"{step.out_dir} was finished by another command ({recorded}); the sweep would now run {step.command}. Remove that directory or use another output directory."
        )
    return True


def subprocess_env() -> dict[str, str]:
    """The recipes are imported from this checkout (``recipes`` is not a package
    of the wheel)."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) if not path else f"{REPO}{os.pathsep}{path}"
    env.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    return env


def run_steps(
    steps: Sequence[SweepStep],
    out_dir: Path,
    *,
    echo: Callable[[str], None] = print,
) -> SweepProgress:
    """Run ``steps`` in order; their output goes to ``out_dir/logs/``."""
    progress = SweepProgress()
    bad: set[Path] = set()
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    for step in steps:
        if any(need in bad for need in step.needs):
            bad.add(step.out_dir)
            progress.blocked.append(step.out_dir)
            echo(
                f"[sweep] {step.kind} {step.out_dir}: not run (a step it needs failed)"
            )
            continue

        if is_finished(step):
            progress.skipped.append(step.out_dir)
            echo(f"[sweep] {step.kind} {step.out_dir}: finished earlier, skipped")
            continue

        log = log_dir / (
            str(step.out_dir.relative_to(out_dir)).replace("/", "__")
            + f".{step.kind}.log"
        )
        echo(f"[sweep] {step.kind} {step.out_dir}: running (log: {log})")

        with log.open("w") as fp:
            fp.write(" ".join(step.command) + "\n\n")
            fp.flush()
            done = subprocess.run(
                step.command,
                cwd=REPO,
                env=subprocess_env(),
                stdout=fp,
                stderr=subprocess.STDOUT,
            )

        if done.returncode != 0:
            bad.add(step.out_dir)
            progress.failed[step.out_dir] = f"exit code {done.returncode}; see {log}"
            echo(
                f"[sweep] {step.kind} {step.out_dir}: FAILED (exit code {done.returncode}, see {log})"
            )
            continue

        step.out_dir.mkdir(parents=True, exist_ok=True)
        (step.out_dir / MARKER).write_text(
            json.dumps({"kind": step.kind, "command": step.command}, indent=2) + "\n"
        )
        progress.ran.append(step.out_dir)

    return progress
