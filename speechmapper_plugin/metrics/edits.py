"""Edit counts of hypotheses against references with jiwer's alignment.

The one place that counts word and character edits: the evaluation's WER/CER
(:mod:`speechmapper_plugin.evaluation.asr`) and stage 1's embedding-space WER
(:mod:`speechmapper_plugin.metrics.wer`) both sum these counts, so ranks and
resumed runs can be merged. It imports nothing of the plugin, so every layer
may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import jiwer

Unit = Literal["word", "char"]


@dataclass(frozen=True)
class EditCounts:
    """Edits of one hypothesis (or a sum of them) against its reference."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_units: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_units + other.reference_units,
        )

    def rate(self) -> float | None:
        """Errors per reference unit, in %; ``None`` without reference units."""
        if self.reference_units == 0:
            return None
        return 100.0 * self.errors / self.reference_units


def edit_counts(reference: str, hypothesis: str, unit: Unit) -> EditCounts:
    """jiwer's alignment of one pair; an empty reference makes every
    hypothesis unit an insertion."""
    if unit == "word":
        words = jiwer.process_words(reference, hypothesis)
        ref_units = sum(len(seq) for seq in words.references)
        return EditCounts(
            words.substitutions, words.deletions, words.insertions, ref_units
        )
    chars = jiwer.process_characters(reference, hypothesis)
    ref_units = sum(len(seq) for seq in chars.references)
    return EditCounts(chars.substitutions, chars.deletions, chars.insertions, ref_units)


def corpus_edit_counts(
    references: Sequence[str],
    hypotheses: Sequence[str],
    unit: Unit,
    normalize: Callable[[str], str] | None = None,
) -> tuple[EditCounts, list[EditCounts]]:
    """The corpus sum and the per-utterance counts."""
    if len(references) != len(hypotheses):
        raise ValueError(
            f"`references` and `hypotheses` must have the same length, but have {len(references)} and {len(hypotheses)}."
        )
    per_utt = []
    for ref, hyp in zip(references, hypotheses, strict=True):
        if normalize is not None:
            ref, hyp = normalize(ref), normalize(hyp)
        per_utt.append(edit_counts(ref, hyp, unit))
    return sum(per_utt, EditCounts()), per_utt
