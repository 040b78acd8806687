"""Checks the inputs of generation and works out each example's token budget.

Everything that can be wrong with a batch is caught here, before the first
forward pass, with a message that names the offending rows: a bad batch must
not fail deep inside the model (or, worse, decode garbage silently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor

from speechmapper_plugin.generation.config import GenerationConfig
from speechmapper_plugin.input_checks import (
    describe_rows,
    finite_rows,
    sequence_fits,
)

LengthsLike = Sequence[int] | Tensor | BatchLayout


class PromptTooLongError(ValueError):
    """Raised when prompts leave the model no room to generate a token."""

    def __init__(
        self, rows: Sequence[int], prompt_lens: Sequence[int], max_seq_len: int
    ) -> None:
        super().__init__(
            f"Prompts too long for the model ({describe_rows(rows, prompt_lens, 'positions')}); `model.max_seq_len` is {max_seq_len}, so a prompt may have at most {max_seq_len - 1} positions. Drop or split these utterances before batching."
        )
        self.rows = list(rows)


@dataclass(frozen=True)
class GenerationInputs:
    """A validated batch, ready to decode."""

    embeds: Tensor
    """``[B, S, D]`` right-padded prompts, on the model's device and dtype."""

    prompt_lens: list[int]

    budgets: list[int]
    """The maximum number of new tokens per example."""

    stop_mask: Tensor
    """``[V]`` bool on the model's device: which tokens end an answer."""

    vocab_size: int

    @property
    def total_len(self) -> int:
        """The longest sequence (prompt + generated tokens) in the batch."""
        return max(n + b for n, b in zip(self.prompt_lens, self.budgets, strict=True))


def token_budgets(
    config: GenerationConfig,
    prompt_lens: Sequence[int],
    num_speech_positions: Sequence[int] | None,
    max_seq_len: int,
) -> list[int]:
    """The maximum number of new tokens of each example (see :class:`GenerationConfig`)."""
    budgets = []
    for row, prompt_len in enumerate(prompt_lens):
        budget = min(config.max_new_tokens, max_seq_len - prompt_len)
        if isinstance(config.max_gen_len, int):
            budget = min(budget, config.max_gen_len)
        elif num_speech_positions is not None:
            a, b = config.max_gen_len
            budget = min(budget, math.floor(a * num_speech_positions[row] + b))
        budgets.append(budget)
    return budgets


def prepare_inputs(
    model: TransformerLM,
    prompt_embeds: Tensor,
    prompt_lens: LengthsLike,
    *,
    stop_token_ids: Sequence[int],
    config: GenerationConfig,
    num_speech_positions: Sequence[int] | Tensor | None,
) -> GenerationInputs:
    """Validate a batch (see the module docstring) and compute its budgets."""
    config.check()

    _check_model(model)

    dtype, device = model_dtype_and_device(model)

    if prompt_embeds.ndim != 3:
        raise ValueError(
            f"`prompt_embeds` must have the shape [batch, positions, model_dim], but has the shape {tuple(prompt_embeds.shape)}."
        )

    batch_size, width, dim = prompt_embeds.shape

    if batch_size == 0:
        raise ValueError(
            "`prompt_embeds` is an empty batch; there is nothing to generate."
        )

    if dim != model.model_dim:
        raise ValueError(
            f"`prompt_embeds` has {dim}-dimensional embeddings, but the model expects {model.model_dim} (`model.model_dim`). Is the projector trained for this LLM (its `output_dim`)?"
        )

    if not prompt_embeds.is_floating_point():
        raise TypeError(
            f"`prompt_embeds` must be a floating-point tensor, but is {prompt_embeds.dtype}."
        )

    if prompt_embeds.device != device:
        raise ValueError(
            f"`prompt_embeds` is on {prompt_embeds.device}, but the model is on {device}; move one of them first."
        )

    lens = _as_int_list(prompt_lens, "prompt_lens")

    if len(lens) != batch_size:
        raise ValueError(
            f"`prompt_lens` has {len(lens)} entries, but `prompt_embeds` holds {batch_size} prompts."
        )

    bad = [(r, n) for r, n in enumerate(lens) if not 1 <= n <= width]
    if bad:
        details = ", ".join(f"row {r}: {n}" for r, n in bad)
        raise ValueError(
            f"Every prompt length must be in [1, {width}] (the width of `prompt_embeds`), but got {details}."
        )

    finite = finite_rows(prompt_embeds, lens)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten().tolist()
        raise ValueError(
            f"`prompt_embeds` holds NaN or infinite values within the prompts of rows {rows}; check the projector output for these utterances."
        )

    too_long = [
        (r, n) for r, n in enumerate(lens) if not sequence_fits(n, model.max_seq_len)
    ]
    if too_long:
        raise PromptTooLongError(
            [r for r, _ in too_long], [n for _, n in too_long], model.max_seq_len
        )

    vocab_size = model.final_proj.output_dim

    stop_ids = list(stop_token_ids)
    if not stop_ids:
        raise ValueError(
            "`stop_token_ids` is empty; pass the chat template's end-of-turn token id(s) so hypotheses can end."
        )

    bad_ids = [i for i in stop_ids if not 0 <= i < vocab_size]
    if bad_ids:
        raise ValueError(
            f"`stop_token_ids` {bad_ids} are outside the model's vocabulary [0, {vocab_size})."
        )

    num_positions: list[int] | None = None
    if num_speech_positions is not None:
        num_positions = _as_int_list(num_speech_positions, "num_speech_positions")

        if len(num_positions) != batch_size:
            raise ValueError(
                f"`num_speech_positions` has {len(num_positions)} entries, but `prompt_embeds` holds {batch_size} prompts."
            )

        negative = [(r, n) for r, n in enumerate(num_positions) if n < 0]
        if negative:
            details = ", ".join(f"row {r}: {n}" for r, n in negative)
            raise ValueError(
                f"`num_speech_positions` must be non-negative, but got {details}."
            )

    budgets = token_budgets(config, lens, num_positions, model.max_seq_len)

    stop_mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    stop_mask[stop_ids] = True

    embeds = prompt_embeds[:, : max(lens)].to(dtype)

    return GenerationInputs(embeds, lens, budgets, stop_mask, vocab_size)


def _check_model(model: TransformerLM) -> None:
    if not isinstance(model, TransformerLM):
        raise TypeError(
            f"`model` must be a fairseq2 `TransformerLM`, but is {type(model).__name__}."
        )

    if model.training:
        raise ValueError(
            "`model` is in training mode, where fairseq2 ignores the incremental state; call `model.eval()` first (generation does not change the model)."
        )

    if getattr(model.decoder_frontend, "pos_encoder", None) is not None:
        raise ValueError(
            "The model's decoder frontend adds absolute position encodings, which prompt embeddings would lack; only LMs with positions inside attention (RoPE: llama, mistral, qwen) are supported."
        )


def model_dtype_and_device(model: TransformerLM) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the decoder's weights, which prompts must match."""
    for param in model.decoder.parameters():
        if param.is_floating_point():
            return param.dtype, param.device
    raise ValueError("The model's decoder has no floating-point parameters.")


def _as_int_list(values: LengthsLike | Sequence[int], name: str) -> list[int]:
    if isinstance(values, BatchLayout):
        if values.packed:
            raise ValueError(f"`{name}` must describe a padded, not a packed, batch.")
        return list(values.seq_lens)

    if isinstance(values, Tensor):
        if values.ndim != 1 or values.is_floating_point():
            raise ValueError(
                f"`{name}` must be a 1-D integer tensor, but has dtype {values.dtype} and shape {tuple(values.shape)}."
            )
        return [int(v) for v in values.tolist()]

    return [int(v) for v in values]
