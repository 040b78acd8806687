"""Word error counting with jiwer, accumulated as sums so ranks can merge them."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import jiwer

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
    """Total word edits (substitutions + deletions + insertions) and reference words.

    Pairs whose normalised reference is empty count every hypothesis word as an
    insertion (jiwer refuses empty references).
    """
    if len(references) != len(hypotheses):
        raise ValueError(
            f"`references` and `hypotheses` must have the same length, but have {len(references)} and {len(hypotheses)}."
        )
    errors = 0
    words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_n, hyp_n = normalize_text(ref), normalize_text(hyp)
        if not ref_n:
            errors += len(hyp_n.split())
            continue
        out = jiwer.process_words(ref_n, hyp_n)
        errors += out.substitutions + out.deletions + out.insertions
        words += len(ref_n.split())
    return errors, words
