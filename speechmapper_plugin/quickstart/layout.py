"""Where the quickstart puts everything, and taking over its output directory."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

MARKER: Final = ".speechmapper_quickstart"
"""Marks a directory the quickstart made, so a rerun may resume or replace it
(and never touches a directory of anything else)."""

SPLITS: Final = ("train", "dev", "test")

SIGMAS: Final = {"sigma09": 0.9, "sigma0": 0.0}
"""The stage-2 runs: task-agnostic (σ = 0.9) and the paper's ablation (σ = 0)."""


def write_result_files(
    out_dir: Path, stem: str, data: object, markdown: str
) -> tuple[Path, Path]:
    """A result as ``STEM.json`` (for scripts) and ``STEM.md`` (for people),
    side by side: what each of the quickstart's commands leaves behind."""
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    md_path.write_text(markdown, encoding="utf-8")
    return json_path, md_path


class QuickstartError(Exception):
    """The quickstart cannot go on; the message says why and what to do."""


def claim_options(
    record: Path,
    options: dict[str, Any],
    *,
    what: str,
    remedy: str,
    outputs: Path | None = None,
) -> None:
    """Record the options a run (or one step of it) is made with, before it
    runs; or check them against an earlier call's record, whose outputs,
    finished or interrupted, this call would otherwise resume or reuse as
    they are (mixing two runs, or reporting one as the other).

    :param remedy: What to do instead, for the message.
    :param outputs: The step's outputs: if they exist without a record (an
        older version made them), they are not taken either.
    :raises QuickstartError: if the record differs from ``options`` (the
        message names what differs), or ``outputs`` exist without a record.
    """
    if record.is_file():
        made = json.loads(record.read_text(encoding="utf-8"))
        if made != options:
            differences = ", ".join(
                f"{key} {made.get(key)!r}, now {options.get(key)!r}"
                for key in sorted(set(made) | set(options))
                if made.get(key) != options.get(key)
            )
            raise QuickstartError(
                f"{what} was made with other options ({differences}); {remedy}."
            )
        return
    if outputs is not None and outputs.exists():
        raise QuickstartError(
            f"{what} ({outputs}) has no record of the options it was made with (an older version made it); {remedy}."
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(options) + "\n", encoding="utf-8")


@final
class _Under:
    """A fixed path under a layout's root: ``layout.root / parts``."""

    def __init__(self, *parts: str) -> None:
        self._parts = parts

    def __get__(self, layout: QuickstartLayout, owner: type | None = None) -> Path:
        return layout.root.joinpath(*self._parts)


@dataclass(frozen=True)
class QuickstartLayout:
    """The output tree of one quickstart run."""

    root: Path

    assets = _Under("assets")

    llm = _Under("assets", "toy_llm")
    """The toy LLM (Hugging Face directory)."""

    cards = _Under("cards")
    """The asset cards (``common.assets.extra_paths`` of every recipe)."""

    world = _Under("world.json")
    """The toy world's sentences in three languages (JSON)."""

    corpus = _Under("corpus")

    logs = _Under("logs")

    done = _Under("done")
    """One file per finished step: what resuming skips."""

    stage1 = _Under("stage1")

    references = _Under("references.json")
    """Scores of the no-translation baseline and the text upper bound."""

    eet = _Under("eet")

    summary = _Under("summary.json")

    summary_md = _Under("summary.md")

    stage1_plot = _Under("stage1_validation.png")

    def manifest(self, split: str) -> Path:
        return self.corpus / f"{split}.tsv"

    def validation_report(self, split: str) -> Path:
        return self.corpus / f"{split}.validation.tsv"

    def features(self, split: str) -> Path:
        return self.root / "extract" / split / "features"

    def extraction(self, split: str) -> Path:
        return self.root / "extract" / split

    def instructions(self, name: str) -> Path:
        return self.root / "instructions" / f"{name}.jsonl"

    def stage2(self, run: str) -> Path:
        return self.root / f"stage2_{run}"

    def evaluation(self, run: str) -> Path:
        return self.root / f"evaluate_{run}"

    def is_done(self, step: str) -> bool:
        return (self.done / step).is_file()

    def mark_done(self, step: str, seconds: float) -> None:
        self.done.mkdir(parents=True, exist_ok=True)
        (self.done / step).write_text(json.dumps({"seconds": seconds}) + "\n")

    def done_seconds(self, step: str) -> float:
        return float(json.loads((self.done / step).read_text())["seconds"])


def prepare_out_dir(
    root: Path, *, fresh: bool = False
) -> tuple[QuickstartLayout, bool]:
    """Create ``root``, or reuse an earlier quickstart run there (emptied
    first with ``fresh``).

    :returns: The layout, and whether an earlier run is resumed.
    :raises QuickstartError: if ``root`` is a file, or a non-empty directory
        the quickstart did not make.
    """
    root = root.expanduser().absolute()

    resumed = False

    if root.exists():
        if not root.is_dir():
            raise QuickstartError(
                f"{root} exists and is not a directory; give the quickstart a directory to write into."
            )
        if any(root.iterdir()):
            if not (root / MARKER).is_file():
                raise QuickstartError(
                    f"{root} is not empty and was not made by the quickstart; give it an empty or new directory."
                )
            if fresh:
                for child in root.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            else:
                resumed = True

    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(
        "Made by `python -m speechmapper_plugin.quickstart`; a rerun resumes it, `--fresh` replaces it.\n"
    )

    return QuickstartLayout(root), resumed
