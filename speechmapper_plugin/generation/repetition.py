"""The repetition guard: detects n-gram loops in generated tokens.

A loop is the generated suffix made of ``repeats`` consecutive copies of one
n-gram (see :class:`RepetitionGuardConfig` for the thresholds). Search code asks
*which next token would complete a loop* (:func:`loop_completions`), so beam
search can treat such a candidate like a stop token; :func:`find_repetition_loop`
is the plain-Python definition, used to describe a loop and in tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from speechmapper_plugin.generation.config import RepetitionGuardConfig
from speechmapper_plugin.generation.hypothesis import RepetitionLoop


def find_repetition_loop(
    tokens: Sequence[int], guard: RepetitionGuardConfig
) -> RepetitionLoop | None:
    """The loop ``tokens`` end with, smallest n-gram first; ``None`` if none."""
    for ngram_size, repeats in guard.periods():
        span = ngram_size * repeats
        if len(tokens) < span:
            continue

        tail = list(tokens[-span:])

        if any(tail[j] != tail[j + ngram_size] for j in range(span - ngram_size)):
            continue

        # A single repeated token is judged by `token_repeats` only.
        if ngram_size > 1 and len(set(tail[-ngram_size:])) == 1:
            continue

        return RepetitionLoop(ngram_size, repeats, len(tokens) - span)

    return None


def loop_completions(
    seqs: Tensor,
    num_generated: Tensor,
    position: int,
    periods: Sequence[tuple[int, int]],
) -> Tensor:
    """The token that would complete a loop at ``position``, per row and period.

    :param seqs: ``[N, T]`` token history (``T > position``); the generated
        tokens of row ``i`` are ``seqs[i, position - num_generated[i]:position]``.
    :param num_generated: ``[N]`` tokens generated so far (negative while a
        row is still reading its prompt).
    :param periods: ``(n-gram size, repeats)`` pairs, as from
        :meth:`RepetitionGuardConfig.periods`.
    :returns: ``[N, len(periods)]`` token ids, ``-1`` where no token completes
        a loop of that period.
    """
    num_rows = seqs.size(0)

    columns: list[Tensor] = []

    for ngram_size, repeats in periods:
        # The tokens before the new one that the loop must cover.
        span = ngram_size * repeats - 1

        if span > position:
            columns.append(seqs.new_full((num_rows,), -1))
            continue

        window = seqs[:, position - span : position]

        periodic = (window[:, : span - ngram_size] == window[:, ngram_size:]).all(-1)

        ok = periodic & (num_generated >= span)

        if ngram_size > 1:
            ngram = seqs[:, position - ngram_size : position]
            ok &= (ngram != ngram[:, :1]).any(-1)

        completing = seqs[:, position - ngram_size]

        columns.append(torch.where(ok, completing, -1))

    if not columns:
        return seqs.new_full((num_rows, 0), -1)

    return torch.stack(columns, dim=1)


def completion_mask(completions: Tensor, vocab_size: int) -> Tensor:
    """A ``[N, V]`` boolean mask of the tokens in ``completions`` (``-1`` ignored)."""
    num_rows = completions.size(0)

    mask = torch.zeros(
        (num_rows, vocab_size + 1), dtype=torch.bool, device=completions.device
    )

    # Send "no token" to a spare column so it cannot clash with a real token.
    index = torch.where(completions >= 0, completions, vocab_size)

    mask.scatter_(1, index, True)

    return mask[:, :vocab_size]
