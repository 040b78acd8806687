"""Splices speech embeddings into chat prompts: the input of generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from fairseq2.models.transformer_lm import TransformerLM
from torch import Tensor

from speechmapper_plugin.generation.embeddings import embed_token_ids
from speechmapper_plugin.generation.inputs import model_dtype_and_device

TokenIds = Sequence[int]


@dataclass(frozen=True)
class SpeechPromptBatch:
    """Right-padded prompts ``prefix ++ speech ++ suffix``, ready for
    :func:`~speechmapper_plugin.generation.generate_from_embeddings`."""

    embeds: Tensor
    """``[B, S, D]`` decoder inputs; padding is zero."""

    prompt_lens: list[int]

    num_speech_positions: list[int]
    """Speech embeddings per prompt, for the input-tied token budget."""


def splice_speech_prompts(
    model: TransformerLM,
    speech_embeds: Tensor,
    speech_lens: Sequence[int],
    prefix_ids: TokenIds | Sequence[TokenIds],
    suffix_ids: TokenIds | Sequence[TokenIds],
) -> SpeechPromptBatch:
    """Build ``embed(prefix) ++ speech ++ embed(suffix)`` for each example.

    :param speech_embeds: ``[B, T, D]`` right-padded projector outputs.
    :param speech_lens: The valid speech positions of each row.
    :param prefix_ids: The token ids before the speech (chat template up to
        the placeholder), one list for all rows or one per row.
    :param suffix_ids: The token ids after the speech (ending with the
        assistant header), one list for all rows or one per row.
    """
    if speech_embeds.ndim != 3:
        raise ValueError(
            f"`speech_embeds` must have the shape [batch, positions, dim], but has the shape {tuple(speech_embeds.shape)}."
        )

    batch_size, width, dim = speech_embeds.shape

    if dim != model.model_dim:
        raise ValueError(
            f"`speech_embeds` are {dim}-dimensional, but the LLM expects {model.model_dim}; is the projector trained for this LLM?"
        )

    lens = [int(n) for n in speech_lens]
    if len(lens) != batch_size:
        raise ValueError(
            f"`speech_lens` has {len(lens)} entries, but `speech_embeds` holds {batch_size} rows."
        )

    bad = [(r, n) for r, n in enumerate(lens) if not 1 <= n <= width]
    if bad:
        details = ", ".join(f"row {r}: {n}" for r, n in bad)
        raise ValueError(
            f"Every speech length must be in [1, {width}], but got {details}."
        )

    prefixes = _per_row(prefix_ids, batch_size, "prefix_ids")
    suffixes = _per_row(suffix_ids, batch_size, "suffix_ids")

    dtype, device = model_dtype_and_device(model)

    if speech_embeds.device != device:
        raise ValueError(
            f"`speech_embeds` is on {speech_embeds.device}, but the LLM is on {device}; move one of them first."
        )

    rows: list[Tensor] = []
    for row in range(batch_size):
        parts = [speech_embeds[row, : lens[row]].to(dtype)]
        if prefixes[row]:
            parts.insert(0, _embed(model, prefixes[row], device))
        if suffixes[row]:
            parts.append(_embed(model, suffixes[row], device))
        rows.append(torch.cat(parts))

    prompt_lens = [r.size(0) for r in rows]
    embeds = speech_embeds.new_zeros((batch_size, max(prompt_lens), dim), dtype=dtype)
    for row, seq in enumerate(rows):
        embeds[row, : seq.size(0)] = seq

    return SpeechPromptBatch(embeds, prompt_lens, lens)


def _embed(model: TransformerLM, ids: TokenIds, device: torch.device) -> Tensor:
    return embed_token_ids(
        model, torch.tensor(list(ids), dtype=torch.int64, device=device)
    )


def _per_row(
    ids: TokenIds | Sequence[TokenIds], batch_size: int, name: str
) -> list[list[int]]:
    """One id list per row, from a shared list or a list per row."""
    shared: list[int] = []
    per_row: list[list[int]] = []
    for item in ids:
        if isinstance(item, int):
            shared.append(item)
        else:
            per_row.append([int(i) for i in item])

    if shared and per_row:
        raise ValueError(f"`{name}` mixes token ids and lists of token ids.")

    if not per_row:
        return [shared] * batch_size

    if len(per_row) != batch_size:
        raise ValueError(
            f"`{name}` has {len(per_row)} rows, but the batch has {batch_size}."
        )
    return per_row
