"""Re-segmenting a whole recording's output onto its reference segments by
minimum edit distance (the mwerSegmenter procedure, Matusov et al. 2005),
so that sentence-level metrics (BLEU, chrF, COMET) can score a hypothesis
that was produced without the reference's sentence boundaries.

The hypothesis is split into as many contiguous pieces as there are
reference segments (a piece may be empty) so that the sum over segments of
the Levenshtein distance between a piece and its reference segment is
smallest: one dynamic program runs over the hypothesis units against the
concatenated reference units, and at each reference segment's start it may
begin from any hypothesis position where the previous segment's best
alignment ends.

Units are words, or for languages written without spaces
(:data:`~speechmapper_plugin.evaluation.failures.CHARACTER_LANGUAGES`)
non-space characters. Units are compared case-insensitively (mwerSegmenter's
default); each piece is the hypothesis's own text between its first and last
unit, so casing, punctuation and inner spacing are kept.

Ties are broken towards fewer insertions in the later segment: a
hypothesis unit that fits equally well at the end of one segment or the
start of the next stays with the earlier one.

Why not the ``mweralign`` package (the maintained port): its distribution is
licensed GPL-3.0-or-later (this project is MIT), and it configures the root
logger on import; the procedure is one small dynamic program.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from speechmapper_plugin.data.instructions.prompts import language_code
from speechmapper_plugin.evaluation.failures import CHARACTER_LANGUAGES

_WORD = re.compile(r"\S+")
_CHAR = re.compile(r"\S")


@dataclass(frozen=True)
class Resegmentation:
    """A hypothesis cut into one piece per reference segment."""

    segments: list[str]
    """The hypothesis's text aligned to each reference segment ('' if none)."""

    errors: int
    """The summed edit distance (substitutions, insertions, deletions) of the
    pieces to their segments: the minimum over all cuts."""

    reference_units: int
    """Words (or characters) in all reference segments: ``errors /
    reference_units`` is the recording's error rate under this cut."""


def uses_characters(lang: str | None) -> bool:
    """Whether ``lang`` is aligned by character (written without spaces)."""
    return lang is not None and language_code(lang) in CHARACTER_LANGUAGES


def resegment(
    hypothesis: str,
    references: Sequence[str],
    *,
    characters: bool = False,
    case_sensitive: bool = False,
) -> Resegmentation:
    """Cut ``hypothesis`` into ``len(references)`` pieces of least total edit
    distance to ``references`` (see the module docstring).

    :param characters: Align non-space characters instead of words (Chinese,
        Japanese: see :func:`uses_characters`).
    :param case_sensitive: Compare units with their case (default: not).
    """
    if isinstance(references, str):
        raise TypeError(
            "`references` must be a sequence of reference segments, not one string."
        )
    if not references:
        raise ValueError(
            "`references` must hold at least one reference segment to cut the hypothesis onto."
        )
    pattern = _CHAR if characters else _WORD
    spans = [(m.start(), m.end()) for m in pattern.finditer(hypothesis)]
    fold = (lambda s: s) if case_sensitive else str.casefold
    vocab: dict[str, int] = {}

    def ids(texts: Sequence[str]) -> NDArray[np.int64]:
        return np.asarray(
            [vocab.setdefault(fold(t), len(vocab)) for t in texts], dtype=np.int64
        )

    hyp = ids([hypothesis[a:b] for a, b in spans])
    refs = [ids(pattern.findall(segment)) for segment in references]

    ends, errors = _best_cut(hyp, refs)
    pieces = []
    for start, end in zip([0, *ends[:-1]], ends, strict=True):
        pieces.append(
            hypothesis[spans[start][0] : spans[end - 1][1]] if end > start else ""
        )
    return Resegmentation(pieces, errors, sum(len(r) for r in refs))


def _best_cut(
    hyp: NDArray[np.int64], refs: Sequence[NDArray[np.int64]]
) -> tuple[list[int], int]:
    """The end position in ``hyp`` of each segment's piece (the last is
    ``len(hyp)``) and the cut's total edit distance, by one Levenshtein
    program over the concatenated references that carries, in every cell,
    where its segment's piece began."""
    num_hyp = len(hyp)
    positions = np.arange(num_hyp + 1)
    # Best cost of cutting hyp[:j] into the segments so far; before the
    # first segment only the empty prefix is reachable.
    cost = np.full(num_hyp + 1, np.iinfo(np.int64).max // 4, dtype=np.int64)
    cost[0] = 0
    origins: list[NDArray[np.int64]] = []
    for ref in refs:
        # Row 0 of this segment: the piece starts at k (origin) and the units
        # up to j are inserted before the segment's first reference unit.
        row, origin = _insertions(cost, positions.copy())
        for unit in ref:
            delete = row + 1
            diagonal = np.empty_like(row)
            diagonal[0] = delete[0] + 1  # never taken: deletion is cheaper
            diagonal[1:] = row[:-1] + (hyp != unit)
            take_diagonal = diagonal <= delete
            through = np.where(take_diagonal, diagonal, delete)
            through_origin = np.where(
                take_diagonal, np.concatenate(([0], origin[:-1])), origin
            )
            row, origin = _insertions(through, through_origin)
        cost = row
        origins.append(origin)

    ends = [num_hyp]
    for origin in reversed(origins[1:]):
        ends.append(int(origin[ends[-1]]))
    return ends[::-1], int(cost[num_hyp])


def _insertions(
    through: NDArray[np.int64], origin: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``row[j] = min_{k<=j} through[k] + (j - k)`` (hypothesis units k..j-1
    inserted) and the origin of the chosen ``k``; ties take the largest ``k``
    (fewest insertions)."""
    positions = np.arange(len(through))
    shifted = through - positions
    best = np.minimum.accumulate(shifted)
    # The running minimum only falls, so the last position holding it is the
    # largest k achieving it.
    chosen = np.maximum.accumulate(np.where(shifted == best, positions, 0))
    return best + positions, origin[chosen]
