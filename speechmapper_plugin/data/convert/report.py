"""What a conversion wrote and what it skipped, and the error for unusable input."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_SHOWN = 5
"""Skipped items listed by name; the rest are only counted."""


class ConvertError(ValueError):
    """The local copy cannot be converted as a whole (wrong layout, missing
    files, an audio format the decoder cannot read); the message says what to do."""


@dataclass
class ConversionReport:
    corpus: str
    outputs: list[Path] = field(default_factory=list)
    num_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Reason -> number of items left out."""

    skipped_examples: list[str] = field(default_factory=list)

    notes: Counter[str] = field(default_factory=Counter)
    """Kept, but worth knowing (e.g. options that could not be split off)."""

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_examples) < MAX_SHOWN:
            self.skipped_examples.append(f"{reason}: {detail}")

    def note(self, what: str, detail: str) -> None:
        self.notes[what] += 1
        if len(self.skipped_examples) < MAX_SHOWN:
            self.skipped_examples.append(f"{what}: {detail}")

    def summary_lines(self) -> list[str]:
        lines = [f"{self.corpus}: wrote {self.num_written} examples"]
        lines += [f"  -> {path}" for path in self.outputs]
        if self.skipped:
            total = sum(self.skipped.values())
            lines.append(f"Skipped {total}:")
            lines += [f"  {r}: {n}" for r, n in sorted(self.skipped.items())]
        if self.notes:
            lines.append("Kept with notes:")
            lines += [f"  {r}: {n}" for r, n in sorted(self.notes.items())]
        if self.skipped or self.notes:
            lines += [f"  e.g. {e}" for e in self.skipped_examples]
        return lines
