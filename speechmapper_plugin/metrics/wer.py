"""Word errors of stage-1 embedding-space decoding, accumulated as sums so
ranks can merge them. The counting is the evaluation's
(:mod:`speechmapper_plugin.metrics.edits`); only the light normalisation is
this module's (it keeps the metric comparable across tokenizers without
Whisper's English-specific rewrites)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from speechmapper_plugin.metrics.edits import corpus_edit_counts

_PUNCTUATION = re.compile(r"[^\w\s']|_", re.UNICODE)


def normalize_text(text: str) -> str:
    """Lower-case, strip punctuation (keeping apostrophes) and collapse spaces.

    The same normaliser is applied to references and hypotheses; it keeps WER
    comparable across tokenizers that differ in casing and punctuation.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(text.split())


def word_errors(
    references: Sequence[str], hypotheses: Sequence[str]
) -> tuple[int, int]:
    """Total word edits (substitutions + deletions + insertions) and reference
    words, after :func:`normalize_text`; counted by the evaluation's jiwer
    alignment (an empty reference makes every hypothesis word an insertion)."""
    total, _ = corpus_edit_counts(references, hypotheses, "word", normalize_text)
    return total.errors, total.reference_units
