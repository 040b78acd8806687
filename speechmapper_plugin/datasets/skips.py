"""Counted skips: every example a dataset leaves out is counted and listed.

A skip is a :class:`BadRow` with a reason code of
:mod:`speechmapper_plugin.data.reasons` and a detail, like every other
bad-row report; summaries count the codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from speechmapper_plugin.data.bad_rows_tsv import count_reasons, save_bad_rows_tsv
from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.data.usability import Unusable


@dataclass
class SkipReport:
    """Which examples of a split were left out, and why."""

    split: str
    num_examples: int = 0
    """The number of examples considered (kept + skipped)."""

    skipped: list[BadRow] = field(default_factory=list)
    """Every skipped example (``line_no`` 0: examples are named by id)."""

    def skip(self, example_id: str, problem: Unusable) -> None:
        self.skipped.append(problem.bad_row(0, example_id))

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def num_kept(self) -> int:
        return self.num_examples - self.num_skipped

    def counts(self) -> dict[str, int]:
        """Reason code -> number of skips."""
        return count_reasons(self.skipped)

    def check_usable(self) -> None:
        """:raises ValueError: if every example was skipped (or there was none)."""
        if not self.num_kept:
            raise ValueError(
                f"No usable example in split '{self.split}'. {self.summary()}"
            )

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.split}: all {self.num_examples} examples usable."
        parts = ", ".join(f"{n} {reason}" for reason, n in self.counts().items())
        return f"{self.split}: kept {self.num_kept} of {self.num_examples} examples; skipped {parts}."

    def write_tsv(self, path: Path) -> None:
        """The skipped examples in the layout of every bad-row report."""
        save_bad_rows_tsv(path, self.skipped)
