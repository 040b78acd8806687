"""Counted skips: every example a dataset leaves out is counted and listed."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SkipReport:
    """Which examples of a split were left out, and why."""

    split: str
    num_examples: int = 0
    """The number of examples considered (kept + skipped)."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(example id, reason)`` for every skipped example."""

    def skip(self, example_id: str, reason: str) -> None:
        self.skipped.append((example_id, reason))

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def num_kept(self) -> int:
        return self.num_examples - self.num_skipped

    def counts(self) -> dict[str, int]:
        """The number of skips per reason category (the text before ':')."""
        return dict(Counter(reason.split(":", 1)[0] for _, reason in self.skipped))

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.split}: all {self.num_examples} examples usable."
        parts = ", ".join(
            f"{n} {reason}" for reason, n in sorted(self.counts().items())
        )
        return f"{self.split}: kept {self.num_kept} of {self.num_examples} examples; skipped {parts}."

    def write_tsv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fp:
            writer = csv.writer(fp, delimiter="\t", lineterminator="\n")
            writer.writerow(["id", "reason"])
            writer.writerows(self.skipped)
