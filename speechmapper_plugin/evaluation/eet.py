"""The Embedding Error Threshold (EET): how much embedding error an LLM tolerates.

SpeechMapper's projector is trained to hit the LLM's token embeddings with an
MSE loss; the EET says how small that MSE must be. For a set of sentences, the
sentence's own token embeddings are put where the speech embeddings go in a
fixed instruction (the same prompt assembly as inference), Gaussian noise of
growing variance is added to them, and the LLM decodes greedily. Per noise
level we report the MSE actually added (measured on what the LLM receives,
after the cast to its dtype), the share of outputs that differ from the clean
(noise-free) output, and their WER against the clean output (the paper finds
an EET of ~1e-3 for Llama-3.1-8B and EuroLLM-9B).

The threshold is where the change-rate curve crosses ``change_threshold``,
interpolated log-linearly in MSE between the two levels that bracket the
first crossing, with a percentile bootstrap interval over sentences (each
sentence keeps its draws; resampled sentences give a new curve and a new
crossing). The first level over the threshold alone is a coarse and noisy
figure: on 64 sentences and one draw, 5 % is 3 vs 4 sentences, and the
answer jumps by a whole grid step (3x) from one noise seed to the next.

The noise is drawn once per sentence and draw and scaled to each variance
(common random numbers): levels differ only in the noise's size, so the change
rate is close to monotone in the level and levels compare with little
sampling noise. Everything is seeded; the noise is drawn on the CPU in fp32,
so it does not depend on the device.

For scale, the result also carries the mean square of the sentences'
embeddings (the MSE of an all-zero output against them), of the whole
embedding table and of the pad row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np
import torch
from fairseq2.data.tokenizers import TokenDecoder, Tokenizer
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.utils.validation import ValidationError, ValidationResult
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from speechmapper_plugin.data.instructions import check_placeholder
from speechmapper_plugin.generation import (
    GenerationConfig,
    generate_from_embeddings,
)
from speechmapper_plugin.generation.inputs import model_dtype_and_device
from speechmapper_plugin.llm import (
    ChatTemplate,
    encode_speech_prompt,
    stop_token_ids,
)
from speechmapper_plugin.llm.assemble import assemble_inputs
from speechmapper_plugin.llm.embeddings import embed_token_ids
from speechmapper_plugin.llm.tokens import create_text_decoder, max_token_id
from speechmapper_plugin.metrics.intervals import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Estimate,
    bootstrap_estimate,
)
from speechmapper_plugin.metrics.wer import word_errors
from speechmapper_plugin.padding import pad_sequences
from speechmapper_plugin.speech_llm.task_prompts import TaskPrompts

DEFAULT_VARIANCES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
"""Noise variances (= expected added MSE per element), a log grid around the
paper's ~1e-3 for 4096-d LLMs, up to 1 so that the quickstart's toy LLMs
(EETs up to ~1e-1) are bracketed too."""

DEFAULT_NUM_DRAWS = 4
"""Noise draws per sentence: with 200 sentences, 800 outputs per level, so
5 % is 40 outputs, not 3 of 64."""

THRESHOLD_MEASURED = "measured"
THRESHOLD_BELOW_GRID = "below_grid"
"""Even the smallest variance changes more than the threshold: add smaller ones."""
THRESHOLD_ABOVE_GRID = "above_grid"
"""No variance changes more than the threshold: add larger ones."""

EMPTY_SENTENCE = "empty_sentence"
NO_TOKENS = "no_tokens"
PROMPT_TOO_LONG = "prompt_too_long"


@dataclass(kw_only=True)
class EETConfig:
    """Settings of an EET measurement."""

    variances: list[float] = field(default_factory=lambda: list(DEFAULT_VARIANCES))
    """The noise variances, in increasing order (no 0: the clean output is
    always decoded as the reference)."""

    instruction: str = field(default_factory=lambda: TaskPrompts().asr)
    """The user turn, with ``<speech>`` exactly once where the noisy text
    embeddings go; default: the inference ASR prompt (``TaskPrompts.asr``)."""

    system_prompt: str | None = None

    change_threshold: float = 0.05
    """The EET is the MSE at which the change rate crosses this share."""

    num_draws: int = DEFAULT_NUM_DRAWS
    """Independent noise draws per sentence and level; more draws shrink the
    sampling error of the change rate (the sample is sentences x draws)."""

    num_resamples: int = DEFAULT_RESAMPLES
    """Bootstrap resamples (of sentences) for the threshold's interval."""

    confidence: float = DEFAULT_CONFIDENCE
    """The confidence level of the threshold's interval."""

    seed: int = 2

    batch_size: int = 16

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Greedy decoding (``beam_size`` must be 1); budgets as in inference, tied
    to the number of text tokens in place of speech positions."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        if not self.variances:
            result.add_error("`variances` must list at least one noise variance.")
        elif any(not (v > 0.0 and math.isfinite(v)) for v in self.variances):
            result.add_error(
                f"Every noise variance must be positive and finite, but `variances` is {self.variances}."
            )
        elif any(
            b <= a for a, b in zip(self.variances, self.variances[1:], strict=False)
        ):
            result.add_error(
                f"`variances` must be strictly increasing, but is {self.variances}."
            )

        try:
            check_placeholder(self.instruction, "`instruction`")
        except ValueError as ex:
            result.add_error(str(ex))

        if not 0.0 <= self.change_threshold < 1.0:
            result.add_error(
                f"`change_threshold` must be in [0, 1), but is {self.change_threshold}."
            )

        if not 0.0 < self.confidence < 1.0:
            result.add_error(
                f"`confidence` must be in (0, 1), but is {self.confidence}."
            )

        for name in ("num_draws", "num_resamples", "batch_size"):
            if getattr(self, name) < 1:
                result.add_error(
                    f"`{name}` must be positive, but is {getattr(self, name)}."
                )

        generation = self.generation.validate()
        if generation.has_error():
            result.add_sub_result("generation", generation)
        elif (
            self.generation.beam_size != 1 or self.generation.generator != "beam_search"
        ):
            result.add_error(
                "`generation.beam_size` must be 1 and `generation.generator` `beam_search`: the EET is defined with greedy decoding."
            )

        return result

    def check(self) -> None:
        result = self.validate()
        if result.has_error():
            raise ValidationError(result)


@dataclass(frozen=True)
class EETLevel:
    """The outcome at one noise level."""

    variance: float
    """The noise variance (0 for the clean row)."""

    mse: float
    """The MSE actually added: mean squared difference, over every element of
    every sentence and draw, between the noisy and clean embeddings the LLM
    receives."""

    relative_mse: float
    """``mse`` over the mean square of the clean embeddings."""

    num_outputs: int
    """Outputs compared: sentences x draws."""

    num_changed: int
    """Outputs whose text differs from the clean output."""

    word_errors: int
    """Word edits against the clean outputs (jiwer, normalised text)."""

    num_clean_words: int

    outputs: tuple[str, ...] = ()
    """The outputs at this level: draw after draw, each in sentence order."""

    changed_per_sentence: tuple[int, ...] = ()
    """Per sentence, in sentence order: how many of its draws changed (the
    bootstrap's unit)."""

    @property
    def change_rate(self) -> float:
        return self.num_changed / self.num_outputs

    @property
    def change_rate_stderr(self) -> float:
        """The binomial standard error of :attr:`change_rate`."""
        p = self.change_rate
        return math.sqrt(p * (1.0 - p) / self.num_outputs)

    @property
    def wer_vs_clean(self) -> float | None:
        if self.num_clean_words == 0:
            return None
        return self.word_errors / self.num_clean_words


@dataclass(frozen=True)
class EETSkip:
    """A sentence left out, and why."""

    index: int
    """Its 0-based position in the input."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class EETResult:
    """An EET measurement: per-level figures, the threshold and its settings."""

    llm: str
    instruction: str
    system_prompt: str | None
    change_threshold: float
    num_draws: int
    seed: int
    dtype: str
    embed_dim: int
    embedding_mean_square: float
    """The mean square of the clean text embeddings (their scale): the MSE an
    all-zero output would have against them."""

    sentences: list[str]
    """The sentences measured (skipped ones left out)."""

    clean_outputs: list[str]
    skipped: list[EETSkip]
    levels: list[EETLevel]
    """The clean row (variance 0) first, then each variance."""

    table_mean_square: float = math.nan
    """The mean square of the whole embedding table (every token's decoder
    input), for scale."""

    pad_mean_square: float | None = None
    """The mean square of the pad token's embedding (``None``: the tokenizer
    has no pad token)."""

    num_resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def threshold_level(self) -> EETLevel | None:
        """The first noisy level whose change rate exceeds the threshold (the
        upper end of the bracket the crossing is interpolated in)."""
        for level in self.levels[1:]:
            if level.change_rate > self.change_threshold:
                return level
        return None

    @property
    def threshold_status(self) -> str:
        """:data:`THRESHOLD_MEASURED`, or on which side of the grid it lies."""
        level = self.threshold_level
        if level is None:
            return THRESHOLD_ABOVE_GRID
        return THRESHOLD_BELOW_GRID if level is self.levels[1] else THRESHOLD_MEASURED

    @property
    def threshold_mse(self) -> float | None:
        """The EET: the MSE where the change rate crosses the threshold,
        interpolated between the two bracketing levels (``None`` unless
        bracketed: see :attr:`threshold_status`)."""
        if self.threshold_status != THRESHOLD_MEASURED:
            return None
        levels = self.levels[1:]
        rates = [level.change_rate for level in levels]
        return float(
            interpolate_crossing(
                [level.mse for level in levels], rates, self.change_threshold
            )
        )

    @cached_property
    def threshold_estimate(self) -> Estimate | None:
        """:attr:`threshold_mse` with its percentile bootstrap interval over
        sentences (``None`` unless measured). A resample whose curve is not
        bracketed by the grid counts at the grid's edge, so a bound equal to
        the smallest or largest level's MSE means "this far or beyond"."""
        value = self.threshold_mse
        if value is None:
            return None
        levels = self.levels[1:]
        mses = np.array([level.mse for level in levels])
        counts = np.array(
            [level.changed_per_sentence for level in levels], dtype=np.float64
        ).T
        num_outputs = counts.shape[0] * self.num_draws
        threshold = self.change_threshold

        def crossing(sums: NDArray[np.float64]) -> NDArray[np.float64]:
            return interpolate_crossing(mses, sums / num_outputs, threshold)

        estimate = bootstrap_estimate(
            counts,
            crossing,
            num_resamples=self.num_resamples,
            confidence=self.confidence,
            seed=self.seed,
        )
        return estimate

    @property
    def safe_mse(self) -> float | None:
        """The largest measured MSE below the threshold level (``None`` if even
        the smallest variance changes too many outputs: add smaller ones)."""
        safe = None
        for level in self.levels[1:]:
            if level.change_rate > self.change_threshold:
                break
            safe = level.mse
        return safe


def interpolate_crossing(
    mses: ArrayLike, rates: ArrayLike, threshold: float
) -> NDArray[np.float64]:
    """Where a change-rate curve first exceeds ``threshold``, interpolated
    linearly in log MSE between the level before (rate ``r0 <= threshold`` at
    ``m0``) and the first level above (``r1 > threshold`` at ``m1``):
    ``exp(log m0 + (threshold - r0) / (r1 - r0) * (log m1 - log m0))``.

    Vectorised over the leading axes of ``rates`` (``(..., L)`` for ``L``
    increasing ``mses``). Curves already above at the first level give
    ``mses[0]``, curves never above give ``mses[-1]`` (the grid's edges).
    """
    log_mses = np.log(np.asarray(mses, dtype=np.float64))
    rates = np.asarray(rates, dtype=np.float64)
    if log_mses.ndim != 1 or rates.shape[-1:] != log_mses.shape:
        raise ValueError(
            f"`rates` {rates.shape} must end in the number of MSEs {log_mses.shape}."
        )

    above = rates > threshold
    first = np.argmax(above, axis=-1)
    upper = np.clip(first, 1, log_mses.size - 1)[..., None]
    if log_mses.size == 1:
        upper = np.zeros_like(upper)
    lower = np.maximum(upper - 1, 0)
    r0 = np.take_along_axis(rates, lower, axis=-1)[..., 0]
    r1 = np.take_along_axis(rates, upper, axis=-1)[..., 0]
    m0 = log_mses[lower[..., 0]]
    m1 = log_mses[upper[..., 0]]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(r1 > r0, (threshold - r0) / (r1 - r0), 0.0)
    crossing = np.exp(m0 + np.clip(fraction, 0.0, 1.0) * (m1 - m0))

    crossing = np.where(first == 0, np.exp(log_mses[0]), crossing)
    return np.asarray(
        np.where(above.any(axis=-1), crossing, np.exp(log_mses[-1])),
        dtype=np.float64,
    )


def run_eet(
    model: TransformerLM,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    sentences: Sequence[str],
    config: EETConfig | None = None,
    *,
    llm_name: str = "",
) -> EETResult:
    """Measure the EET of ``model`` on ``sentences`` (see the module docstring).

    Sentences that are empty, tokenize to nothing, or whose prompt does not fit
    the model's context are skipped and listed in :attr:`EETResult.skipped`.

    :raises ValueError: If no sentence is usable, or on an invalid config.
    """
    config = config or EETConfig()
    config.check()

    model.eval()
    dtype, device = model_dtype_and_device(model)

    prompt = encode_speech_prompt(
        tokenizer, template, config.instruction, config.system_prompt
    )
    stop_ids = stop_token_ids(tokenizer, template)
    encode = tokenizer.create_raw_encoder()
    decode = create_text_decoder(tokenizer)

    texts: list[str] = []
    token_ids: list[Tensor] = []
    skipped: list[EETSkip] = []
    overhead = len(prompt.prefix_ids) + len(prompt.suffix_ids)
    for index, sentence in enumerate(sentences):
        sentence = sentence.strip()
        if not sentence:
            skipped.append(EETSkip(index, EMPTY_SENTENCE))
            continue

        ids = encode(sentence)
        if ids.numel() == 0:
            skipped.append(EETSkip(index, NO_TOKENS, sentence))
            continue

        if overhead + ids.numel() >= model.max_seq_len:
            skipped.append(
                EETSkip(
                    index,
                    PROMPT_TOO_LONG,
                    f"{ids.numel()} tokens + {overhead} prompt tokens >= max_seq_len {model.max_seq_len}",
                )
            )
            continue

        texts.append(sentence)
        token_ids.append(ids.to(torch.int64))

    if not texts:
        raise ValueError(
            f"None of the {len(sentences)} sentences is usable for the EET ({_skip_summary(skipped)})."
        )

    with torch.inference_mode():
        clean = [embed_token_ids(model, ids.to(device)) for ids in token_ids]

    clean_fp32 = [e.float().cpu() for e in clean]
    num_elements = sum(e.numel() for e in clean_fp32)
    mean_square = sum(float(e.pow(2).sum()) for e in clean_fp32) / num_elements

    # One standard-normal draw per sentence and draw, shared by all levels.
    generator = torch.Generator().manual_seed(config.seed)
    draws = [
        [torch.randn(e.shape, generator=generator) for e in clean_fp32]
        for _ in range(config.num_draws)
    ]

    decode_all = partial(
        _generate,
        model,
        prefix_ids=prompt.prefix_ids,
        suffix_ids=prompt.suffix_ids,
        stop_ids=stop_ids,
        config=config,
        decode=decode,
    )

    clean_outputs = decode_all(clean)
    levels = [
        EETLevel(
            variance=0.0,
            mse=0.0,
            relative_mse=0.0,
            num_outputs=len(texts),
            num_changed=0,
            word_errors=0,
            num_clean_words=word_errors(clean_outputs, clean_outputs)[1],
            outputs=tuple(clean_outputs),
            changed_per_sentence=(0,) * len(texts),
        )
    ]

    for variance in config.variances:
        std = math.sqrt(variance)
        num_changed = 0
        changed_per_sentence = [0] * len(texts)
        errors = 0
        words = 0
        squared = 0.0
        level_outputs: list[str] = []
        for noise in draws:
            noisy = [
                (e + std * z).to(dtype) for e, z in zip(clean_fp32, noise, strict=True)
            ]
            squared += sum(
                float((n.float() - e).pow(2).sum())
                for n, e in zip(noisy, clean_fp32, strict=True)
            )

            outputs = decode_all([n.to(device) for n in noisy])
            level_outputs.extend(outputs)

            for i, (o, c) in enumerate(zip(outputs, clean_outputs, strict=True)):
                changed_per_sentence[i] += o != c
            draw_errors, draw_words = word_errors(clean_outputs, outputs)
            errors += draw_errors
            words += draw_words

        num_changed = sum(changed_per_sentence)
        mse = squared / (num_elements * config.num_draws)
        levels.append(
            EETLevel(
                variance=variance,
                mse=mse,
                relative_mse=mse / mean_square if mean_square > 0 else math.inf,
                num_outputs=len(texts) * config.num_draws,
                num_changed=num_changed,
                word_errors=errors,
                num_clean_words=words,
                outputs=tuple(level_outputs),
                changed_per_sentence=tuple(changed_per_sentence),
            )
        )

    table_mean_square, pad_mean_square = _table_mean_squares(
        model, max_token_id(tokenizer) + 1, tokenizer.vocab_info.pad_idx
    )

    return EETResult(
        llm=llm_name,
        instruction=config.instruction,
        system_prompt=config.system_prompt,
        change_threshold=config.change_threshold,
        num_draws=config.num_draws,
        seed=config.seed,
        dtype=str(dtype).removeprefix("torch."),
        embed_dim=model.model_dim,
        embedding_mean_square=mean_square,
        sentences=texts,
        clean_outputs=clean_outputs,
        skipped=skipped,
        levels=levels,
        table_mean_square=table_mean_square,
        pad_mean_square=pad_mean_square,
        num_resamples=config.num_resamples,
        confidence=config.confidence,
    )


TABLE_CHUNK = 4096
"""Token ids embedded at a time when measuring the table's mean square."""


def _table_mean_squares(
    model: TransformerLM, vocab_size: int, pad_idx: int | None
) -> tuple[float, float | None]:
    """The mean square of every token's decoder input (the frontend's output,
    as the LLM receives text; ids up to the largest the tokenizer produces),
    and of the tokenizer's pad token alone."""
    _, device = model_dtype_and_device(model)
    total = 0.0
    with torch.inference_mode():
        for start in range(0, vocab_size, TABLE_CHUNK):
            ids = torch.arange(start, min(start + TABLE_CHUNK, vocab_size))
            total += float(embed_token_ids(model, ids.to(device)).float().pow(2).sum())
        pad = None
        if pad_idx is not None:
            row = embed_token_ids(model, torch.tensor([pad_idx], device=device))
            pad = float(row.float().pow(2).mean())
    return total / (vocab_size * model.model_dim), pad


def _generate(
    model: TransformerLM,
    embeddings: Sequence[Tensor],
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    stop_ids: Sequence[int],
    config: EETConfig,
    decode: TokenDecoder,
) -> list[str]:
    """Greedy outputs for text embeddings placed where speech goes, in order.

    Batches hold sentences of similar length (greedy decoding is
    batch-invariant, so the grouping does not change any output).
    """
    order = sorted(range(len(embeddings)), key=lambda i: -embeddings[i].size(0))
    outputs: dict[int, str] = {}

    embed = partial(embed_token_ids, model)

    for start in range(0, len(order), config.batch_size):
        chunk = order[start : start + config.batch_size]
        lens = [embeddings[i].size(0) for i in chunk]

        with torch.inference_mode():
            speech, _ = pad_sequences([embeddings[i] for i in chunk])
            inputs = assemble_inputs(
                embed,
                [prefix_ids] * len(chunk),
                speech,
                lens,
                [suffix_ids] * len(chunk),
            )
            results = generate_from_embeddings(
                model,
                inputs.embeds,
                inputs.layout,
                stop_token_ids=stop_ids,
                config=config.generation,
                num_speech_positions=lens,
            )

        for i, result in zip(chunk, results, strict=True):
            tokens = torch.tensor(result.tokens, dtype=torch.int64)
            outputs[i] = decode(tokens).strip() if result.tokens else ""

    return [outputs[i] for i in range(len(embeddings))]


def _skip_summary(skipped: Sequence[EETSkip]) -> str:
    counts = Counter(skip.reason for skip in skipped)
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "none"


def run_eet_from_card(
    card_name: str,
    sentences: Sequence[str],
    config: EETConfig | None = None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> EETResult:
    """:func:`run_eet` on the LLM, tokenizer and chat template of an asset card."""
    from fairseq2.data.tokenizers import load_tokenizer
    from fairseq2.models import load_model

    from speechmapper_plugin.llm import chat_template_for_card, retrieve_llm_card

    card = retrieve_llm_card(card_name)
    template = chat_template_for_card(card)
    tokenizer = load_tokenizer(card)

    model = load_model(card, device=device, dtype=dtype)
    if not isinstance(model, TransformerLM):
        raise ValueError(
            f"The {card.name} asset card loads a {type(model).__name__}, not a decoder-only LLM (`TransformerLM`)."
        )

    return run_eet(model, tokenizer, template, sentences, config, llm_name=card.name)
