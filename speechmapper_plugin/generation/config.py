"""Configuration of generation from speech embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from fairseq2.recipe.config import (
    BEAM_SEARCH_GENERATOR,
    SAMPLING_GENERATOR,
    TOP_K_SAMPLER,
    TOP_P_SAMPLER,
    TopKSamplerConfig,
    TopPSamplerConfig,
)
from fairseq2.utils.validation import StandardObjectValidator, ValidationResult

from speechmapper_plugin.validation import (
    check_non_negative_fields,
    check_positive_fields,
)


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

        check_non_negative_fields(result, self, ("max_ngram_size",))

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
class SamplerSection:
    """fairseq2's samplers, by its names: ``top_p`` (nucleus sampling) or ``top_k``.

    fairseq2's own ``SamplerChoice`` holds one untyped ``config`` that only a
    recipe's component registry can structure; here each sampler's config
    (fairseq2's ``TopPSamplerConfig``/``TopKSamplerConfig``) has its own field,
    so the section structures, validates and takes command-line overrides
    (``generation.sampler.name=top_k generation.sampler.top_k.k=50``) anywhere.
    """

    name: Literal["top_p", "top_k"] = "top_p"

    top_p: TopPSamplerConfig = field(default_factory=lambda: TopPSamplerConfig())
    """``p``: sample from the smallest set of tokens whose probabilities add
    up to more than ``p`` (fairseq2's default 0.9)."""

    top_k: TopKSamplerConfig = field(default_factory=lambda: TopKSamplerConfig(k=50))
    """``k``: sample from the ``k`` most likely tokens (``k=1`` is greedy)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.name not in (TOP_P_SAMPLER, TOP_K_SAMPLER):
            result.add_error(
                f"`name` must be `{TOP_P_SAMPLER}` or `{TOP_K_SAMPLER}`, but is `{self.name}`."
            )
        return result


GeneratorName = Literal["beam_search", "sampling"]
"""fairseq2's generator names (``BEAM_SEARCH_GENERATOR``, ``SAMPLING_GENERATOR``)."""

RENAMED_FIELDS: Final = {
    "max_len_a": "max_gen_len: [a, b]",
    "max_len_b": "max_gen_len: [a, b]",
    "min_new_tokens": "min_gen_len (min_new_tokens + 1: fairseq2 counts the stop token)",
    "length_penalty": "len_penalty",
}
"""Fields of earlier versions, now named as in fairseq2's ``BeamSearchConfig``
and ``SamplingConfig``; a config that still sets one fails validation with the
new name instead of fairseq2's "extra key" error, which names only the old one."""


@dataclass(kw_only=True)
class GenerationConfig:
    """Holds the configuration of generation from speech embeddings.

    The options carry the names of fairseq2's ``BeamSearchConfig`` and
    ``SamplingConfig`` (``beam_size``, ``min_gen_len``, ``max_gen_len``,
    ``temperature``, ``normalize_scores``, ``len_penalty``, the ``sampler``
    choice) with their meaning; what fairseq2's generators lack (a cap on a
    tied budget, the repetition guard) has its own field.

    The token budget of an example (stop token included) is the smallest of
    ``max_new_tokens``, ``max_gen_len`` (an int; or ``floor(a *
    num_speech_positions + b)`` for ``[a, b]`` when the caller gives the
    number of speech positions) and the room the model has left
    (``model.max_seq_len - prompt_len``). Tying it to the input length bounds
    the damage of a loop the guard misses: stage 1 only trains on transcripts
    with at most one token per speech position, so ``a=1`` leaves room for any
    transcript the projector was trained to produce.

    The stop (end-of-turn) token ids come from the LLM's chat template and are
    passed to :func:`generate_from_embeddings` by the caller.
    """

    generator: GeneratorName = "beam_search"
    """``beam_search`` (``beam_size: 1`` is greedy decoding) or ``sampling``
    (one sample per example, drawn with ``sampler`` from the distribution at
    ``temperature``, using torch's global random generator)."""

    beam_size: int = 1
    """The number of hypotheses kept per example (``beam_search``; must be 1
    with ``sampling``)."""

    sampler: SamplerSection = field(default_factory=lambda: SamplerSection())
    """The sampler of ``sampling`` and its settings."""

    temperature: float = 1.0
    """The logits are divided by it before the softmax (as in fairseq2's
    generators): below 1 sharpens, above 1 flattens the distribution. Greedy
    tokens do not depend on it; their log-probabilities and beam rankings do."""

    min_gen_len: int = 1
    """The minimum generation length, stop token included (fairseq2's
    meaning): stop tokens are blocked until ``min_gen_len - 1`` tokens have
    been generated."""

    max_gen_len: int | tuple[float, int] = (1.0, 32)
    """The maximum generation length, stop token included: a fixed number, or
    ``[a, b]`` for ``floor(a * num_speech_positions + b)`` (fairseq2 ties it
    to the source length the same way). ``b`` covers the answer's own framing
    and very short utterances."""

    max_new_tokens: int = 256
    """A hard cap on every budget (fairseq2 has no counterpart: its tied
    ``max_gen_len`` is only capped by ``max_seq_len``, prompt included). A stop
    token takes one of them: a hypothesis ends with at most ``budget - 1``
    tokens plus its stop token, or with exactly ``budget`` tokens
    (``stop_reason="max_length"``)."""

    normalize_scores: bool = True
    """Rank hypotheses by their log-probability divided by
    ``length ** len_penalty``; otherwise by the raw sum, which favours
    short hypotheses."""

    len_penalty: float = 1.0
    """The exponent of the length normalisation: below 1 favours shorter,
    above 1 longer hypotheses."""

    repetition_guard: RepetitionGuardConfig = field(
        default_factory=RepetitionGuardConfig
    )
    """Detection of n-gram loops in the generated tokens."""

    # Renamed fields (see `RENAMED_FIELDS`); only ever set by an old config.
    max_len_a: object = field(default=None, repr=False)
    max_len_b: object = field(default=None, repr=False)
    min_new_tokens: object = field(default=None, repr=False)
    length_penalty: object = field(default=None, repr=False)

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        for old, new in RENAMED_FIELDS.items():
            if getattr(self, old) is not None:
                result.add_error(
                    f"`{old}` is now fairseq2's `{new}`; rename it in the config."
                )

        if self.generator not in (BEAM_SEARCH_GENERATOR, SAMPLING_GENERATOR):
            result.add_error(
                f"`generator` must be `{BEAM_SEARCH_GENERATOR}` or `{SAMPLING_GENERATOR}`, but is `{self.generator}`."
            )

        check_positive_fields(
            result, self, ("beam_size", "min_gen_len", "max_new_tokens")
        )

        if self.generator == SAMPLING_GENERATOR and self.beam_size != 1:
            result.add_error(
                f"`beam_size` must be 1 with `generator: {SAMPLING_GENERATOR}` (one sample per example), but is {self.beam_size}."
            )

        if not self.temperature > 0.0:
            result.add_error(
                f"`temperature` must be positive, but is {self.temperature}."
            )

        if isinstance(self.max_gen_len, int):
            if self.max_gen_len < self.min_gen_len:
                result.add_error(
                    f"`max_gen_len` must be at least `min_gen_len` ({self.min_gen_len}), but is {self.max_gen_len}."
                )
        else:
            a, b = self.max_gen_len
            if a < 0.0:
                result.add_error(
                    f"`max_gen_len` is [a, b] with a non-negative `a`, but `a` is {a}."
                )
            if b < 1:
                result.add_error(
                    f"`max_gen_len` is [a, b] with a positive `b` (every example may generate at least one token), but `b` is {b}."
                )

        check_non_negative_fields(result, self, ("len_penalty",))

        return result

    def check(self) -> None:
        """Raise :class:`~fairseq2.utils.validation.ValidationError` if this
        configuration or one of its sections is not valid (fairseq2's
        validator, as a recipe validates its config)."""
        StandardObjectValidator().validate(self)
