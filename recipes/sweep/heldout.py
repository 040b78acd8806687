"""Held-out prompts: the evaluation instructions must not be training instructions.

SpeechMapper's claim is that task-agnostic tuning generalises to unseen
wordings; a sweep that evaluates on its training prompts would reward σ values
that overfit the prompts (the paper's σ = 0 failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speechmapper_plugin.data.instructions import read_instructions


def check_heldout_prompts(eval_file: Path, train_files: Sequence[Path]) -> int:
    """The number of distinct instructions in ``eval_file``.

    :raises ValueError: If one of them is also an instruction of a training
        file, or a file cannot be read.
    """
    try:
        eval_prompts = {e.instruction for e in read_instructions(eval_file)}
        train_prompts: set[str] = set()
        for path in train_files:
            train_prompts.update(e.instruction for e in read_instructions(path))
    except (OSError, ValueError) as ex:
        raise ValueError(f"Cannot check the held-out prompts: {ex}") from None

    shared = sorted(eval_prompts & train_prompts)
    if shared:
        shown = "; ".join(repr(p) for p in shared[:3])
        raise ValueError(
            f"{len(shared)} instruction(s) of the held-out file {eval_file} are also training instructions ({shown}). Build the held-out file from the evaluation pool (`python -m speechmapper_plugin.data.instructions asr ... --pool eval`)."
        )

    return len(eval_prompts)
