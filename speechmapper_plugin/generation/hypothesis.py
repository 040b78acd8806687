"""What generation returns: hypotheses and why each one stopped."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

StopReason: TypeAlias = Literal["eos", "max_length", "repetition", "cancelled"]
"""Why a hypothesis ended: a stop (end-of-turn) token, its token budget, the
repetition guard, or its caller cancelling it mid-generation (a server whose
client went away: its tokens are a cut-off answer, never a complete one).
Counting them over a test set makes the "loops until max length" failure of
speech LLMs measurable."""

SEARCH_STOP_REASONS: Final[tuple[StopReason, ...]] = ("eos", "max_length", "repetition")
"""The reasons a search ends an answer by itself (all but ``"cancelled"``,
which only a caller gives): the columns of a stop-reason count."""


@dataclass(frozen=True)
class RepetitionLoop:
    """The n-gram loop that made the repetition guard stop a hypothesis."""

    ngram_size: int
    """The number of tokens in the repeated n-gram."""

    num_repeats: int
    """The number of consecutive copies present when the guard stopped."""

    start: int
    """The index in :attr:`Hypothesis.tokens` where the first counted copy begins."""


@dataclass(frozen=True)
class Hypothesis:
    """One generated answer.

    The tokens are kept exactly as generated, loop included, so a transcript
    never silently loses content; :meth:`trimmed_tokens` gives the version
    with the repeated copies removed.
    """

    tokens: list[int]
    """The generated token ids, without the stop token."""

    token_log_probs: list[float]
    """The log-probability of each entry of :attr:`tokens`."""

    log_prob: float
    """The sum of :attr:`token_log_probs`, plus the stop token's
    log-probability when ``stop_reason == "eos"``."""

    score: float
    """The ranking score: :attr:`log_prob`, divided by
    ``num_scored_tokens ** len_penalty`` when scores are normalised
    (the stop token counts as a scored token)."""

    stop_reason: StopReason

    stop_token_id: int | None = None
    """The stop token that ended the hypothesis (``stop_reason == "eos"`` only)."""

    loop: RepetitionLoop | None = None
    """The detected loop (``stop_reason == "repetition"`` only)."""

    @property
    def num_scored_tokens(self) -> int:
        return len(self.tokens) + (1 if self.stop_reason == "eos" else 0)

    def trimmed_tokens(self) -> list[int]:
        """The tokens with all but the first copy of a detected loop removed."""
        if self.loop is None:
            return list(self.tokens)
        return self.tokens[: self.loop.start + self.loop.ngram_size]


@dataclass(frozen=True)
class GenerationResult:
    """The hypotheses generated for one example of a batch."""

    hypotheses: list[Hypothesis]
    """The n-best list, best first (one entry for greedy decoding; at most
    ``beam_size`` for beam search)."""

    prompt_len: int
    """The number of prompt positions (embeddings) of the example."""

    max_new_tokens: int
    """The token budget that applied to the example (see
    :class:`~speechmapper_plugin.generation.config.GenerationConfig`)."""

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]

    @property
    def tokens(self) -> list[int]:
        return self.best.tokens

    @property
    def stop_reason(self) -> StopReason:
        return self.best.stop_reason


def stop_reason_counts(results: Iterable[GenerationResult]) -> dict[StopReason, int]:
    """How often the best hypotheses stopped for each reason: every reason a
    search gives (:data:`SEARCH_STOP_REASONS`) listed, ``"cancelled"`` only
    when some answer was cancelled (offline runs never cancel).

    A rising ``repetition`` or ``max_length`` share is the signature of a
    projector the LLM cannot follow.
    """
    counts: dict[StopReason, int] = dict.fromkeys(SEARCH_STOP_REASONS, 0)
    for result in results:
        counts[result.stop_reason] = counts.get(result.stop_reason, 0) + 1
    return counts
