"""Where the quickstart puts everything, and taking over its output directory."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MARKER: Final = ".speechmapper_quickstart"
"""Marks a directory the quickstart made, so a rerun may replace it (and
never a directory of anything else)."""


class QuickstartError(Exception):
    """The quickstart cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class QuickstartLayout:
    """The output tree of one quickstart run."""

    root: Path

    @property
    def assets(self) -> Path:
        """The tiny checkpoints and tokenizer."""
        return self.root / "assets"

    @property
    def cards(self) -> Path:
        """The asset cards (``common.assets.extra_paths`` of every recipe)."""
        return self.root / "cards"

    @property
    def corpus(self) -> Path:
        """Synthesised audio and the manifests."""
        return self.root / "corpus"

    @property
    def logs(self) -> Path:
        """One log per step: its command line, then its output."""
        return self.root / "logs"

    def manifest(self, split: str) -> Path:
        return self.corpus / f"{split}.tsv"

    def validation_report(self, split: str) -> Path:
        return self.corpus / f"{split}.validation.tsv"

    def extraction(self, split: str) -> Path:
        return self.root / "extract" / split

    def features(self, split: str) -> Path:
        return self.extraction(split) / "features"

    def instructions(self, split: str) -> Path:
        return self.root / "instructions" / f"{split}.jsonl"

    @property
    def stage1(self) -> Path:
        return self.root / "stage1"

    @property
    def stage2(self) -> Path:
        return self.root / "stage2"

    @property
    def generate(self) -> Path:
        return self.root / "generate"

    @property
    def summary(self) -> Path:
        """Everything the final summary shows, as JSON."""
        return self.root / "summary.json"


def prepare_out_dir(root: Path) -> tuple[QuickstartLayout, bool]:
    """Create ``root`` for a fresh run, emptying an earlier quickstart run.

    :returns: The layout, and whether an earlier run was removed.
    :raises QuickstartError: if ``root`` is a file, or a non-empty directory
        the quickstart did not make.
    """
    root = root.expanduser().absolute()

    replaced = False

    if root.exists():
        if not root.is_dir():
            raise QuickstartError(
                f"{root} exists and is not a directory; give the quickstart a directory to write into."
            )
        if any(root.iterdir()):
            if not (root / MARKER).is_file():
                raise QuickstartError(
                    f"{root} is not empty and was not made by the quickstart; give it an empty or new directory (its contents would be replaced)."
                )
            for child in root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            replaced = True

    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(
        "Made by `python -m speechmapper_plugin.quickstart`; a rerun replaces this directory.\n"
    )

    return QuickstartLayout(root), replaced
