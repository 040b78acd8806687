"""Configuration of generation from speech embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field

from fairseq2.utils.validation import ValidationError, ValidationResult

from speechmapper_plugin.validation import check_positive_fields


@dataclass(kw_only=True)
class RepetitionGuardConfig:
    """Stops a hypothesis whose generated tokens fall into a loop.

    Speech LLMs that lose track of the audio tend to repeat a phrase until the
    length limit; the guard ends such a hypothesis early with
    ``stop_reason="repetition"`` so the loop is visible in the output and does
    not cost the full token budget. A loop is the generated suffix made of
    consecutive identical copies of one n-gram.
    """

    enabled: bool = True
    """Turn the guard on or off as a whole."""

    max_ngram_size: int = 16
    """The longest looping n-gram detected (n-grams of 2..``max_ngram_size``
    tokens); 0 or 1 turns n-gram detection off. Loops of whole sentences are
    typically 8-16 tokens long."""

    ngram_repeats: int = 4
    """Stop when an n-gram of 2 or more tokens has been generated this many
    times in a row. An n-gram made of one repeated token is left to
    ``token_repeats``."""

    token_repeats: int = 8
    """Stop when one token has been generated this many times in a row (0
    turns this off). Higher than ``ngram_repeats`` because short runs of one
    token are legitimate ("no no no", digit groups of long numbers)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        if self.max_ngram_size < 0:
            result.add_error(
                f"`max_ngram_size` must be non-negative, but is {self.max_ngram_size}."
            )

        if self.max_ngram_size >= 2 and self.ngram_repeats < 2:
            result.add_error(
                f"`ngram_repeats` must be at least 2 (one copy is not a loop), but is {self.ngram_repeats}."
            )

        if self.token_repeats != 0 and self.token_repeats < 2:
            result.add_error(
                f"`token_repeats` must be 0 (off) or at least 2, but is {self.token_repeats}."
            )

        return result

    def periods(self) -> list[tuple[int, int]]:
        """The ``(n-gram size, repeats)`` pairs that trigger a stop."""
        if not self.enabled:
            return []

        periods: list[tuple[int, int]] = []

        if self.token_repeats >= 2:
            periods.append((1, self.token_repeats))

        for size in range(2, self.max_ngram_size + 1):
            periods.append((size, self.ngram_repeats))

        return periods


@dataclass(kw_only=True)
class GenerationConfig:
    """Holds the configuration of generation from speech embeddings.

    The token budget of an example is the smallest of ``max_new_tokens``,
    ``floor(max_len_a * num_speech_positions + max_len_b)`` (when the caller
    gives the number of speech positions) and the room the model has left
    (``model.max_seq_len - prompt_len``). Tying it to the input length bounds
    the damage of a loop the guard misses: stage 1 only trains on transcripts
    with at most one token per speech position, so ``max_len_a=1`` leaves room
    for any transcript the projector was trained to produce.

    The stop (end-of-turn) token ids come from the LLM's chat template and are
    passed to :func:`generate_from_embeddings` by the caller.
    """

    beam_size: int = 1
    """The number of hypotheses kept per example; 1 is greedy decoding."""

    max_new_tokens: int = 256
    """The hard cap on generated tokens per example. A stop token takes one of
    them: a hypothesis ends with at most ``budget - 1`` tokens plus its stop
    token, or with exactly ``budget`` tokens (``stop_reason="max_length"``)."""

    max_len_a: float = 1.0
    """Generated tokens allowed per speech position (the ``a`` in ``a*x+b``)."""

    max_len_b: int = 32
    """Generated tokens allowed on top of the input-tied part (``b``); covers
    the answer's own framing and very short utterances."""

    min_new_tokens: int = 0
    """Stop tokens are blocked until this many tokens have been generated."""

    normalize_scores: bool = True
    """Rank hypotheses by their log-probability divided by
    ``length ** length_penalty``; otherwise by the raw sum, which favours
    short hypotheses."""

    length_penalty: float = 1.0
    """The exponent of the length normalisation: below 1 favours shorter,
    above 1 longer hypotheses."""

    repetition_guard: RepetitionGuardConfig = field(
        default_factory=RepetitionGuardConfig
    )
    """Detection of n-gram loops in the generated tokens."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        check_positive_fields(result, self, ("beam_size", "max_new_tokens"))

        if self.max_len_a < 0.0:
            result.add_error(
                f"`max_len_a` must be non-negative, but is {self.max_len_a}."
            )

        if self.max_len_b < 1:
            result.add_error(
                f"`max_len_b` must be positive (every example may generate at least one token), but is {self.max_len_b}."
            )

        if self.min_new_tokens < 0:
            result.add_error(
                f"`min_new_tokens` must be non-negative, but is {self.min_new_tokens}."
            )

        if self.length_penalty < 0.0:
            result.add_error(
                f"`length_penalty` must be non-negative, but is {self.length_penalty}."
            )

        guard = self.repetition_guard.validate()
        if guard.has_error():
            result.add_sub_result("repetition_guard", guard)

        return result

    def check(self) -> None:
        """Raise :class:`ValidationError` if the configuration is not valid."""
        result = self.validate()
        if result.has_error():
            raise ValidationError(result)
