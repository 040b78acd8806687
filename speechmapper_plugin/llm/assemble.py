"""Splices speech embeddings into token-embedded chat prompts.

A row is ``prefix tokens ++ speech embeddings ++ suffix tokens ++ response
tokens``: the prefix and suffix come from the chat template (the user turn
split at the speech placeholder), the response ends with the template's
end-of-turn token. The LLM reads embeddings, so the four parts are embedded
(or projected) separately and concatenated per row, then right-padded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from fairseq2.nn import BatchLayout
from torch import Tensor


@dataclass
class AssembledInputs:
    embeds: Tensor
    """``[B, L, D]`` input embeddings, right-padded with zeros."""

    layout: BatchLayout

    speech_offsets: list[int]
    """Where each row's speech embeddings start."""

    target_ids: Tensor
    """``[B, L]`` the next token at each position (0 where not a target)."""

    target_mask: Tensor
    """``[B, L]`` true at positions whose next token is a response token."""

    @property
    def num_targets(self) -> int:
        return int(self.target_mask.sum())


def assemble_inputs(
    embed_tokens: Callable[[Tensor], Tensor],
    prefix_ids: Sequence[Sequence[int]],
    speech: Tensor,
    speech_lens: Sequence[int],
    suffix_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]] | None = None,
) -> AssembledInputs:
    """Builds the LLM input for a batch.

    :param embed_tokens: token ids ``[N]`` -> embeddings ``[N, D]`` (the LLM's
        own embedding layer).
    :param speech: ``[B, S, D]`` projector outputs; positions at or beyond
        ``speech_lens`` are ignored.
    :param response_ids: the responses to train on (teacher forcing); ``None``
        for generation prompts.
    """
    batch_size = speech.size(0)
    if not (len(prefix_ids) == len(suffix_ids) == len(speech_lens) == batch_size):
        raise ValueError(
            f"Batch parts disagree in size: {len(prefix_ids)} prefixes, {batch_size} speech rows, {len(speech_lens)} speech lengths, {len(suffix_ids)} suffixes."
        )
    if response_ids is not None and len(response_ids) != batch_size:
        raise ValueError(f"Expected {batch_size} responses, got {len(response_ids)}.")

    device = speech.device
    rows: list[Tensor] = []
    targets: list[Tensor] = []
    masks: list[Tensor] = []
    offsets: list[int] = []

    responses = (
        [list(r) for r in response_ids]
        if response_ids is not None
        else [[]] * batch_size
    )
    for b, response in enumerate(responses):
        if response_ids is not None and not response:
            raise ValueError(
                f"Row {b} has an empty response; training needs at least the end-of-turn token."
            )

    # All text of the batch goes through the embedding layer in one call: one
    # call per batch whatever its size (an FSDP-sharded LLM must see the same
    # calls on every rank), and one kernel launch instead of one per row.
    text_ids = [
        list(prefix_ids[b]) + list(suffix_ids[b]) + responses[b]
        for b in range(batch_size)
    ]
    all_embeds = embed_tokens(
        torch.tensor(
            [i for ids in text_ids for i in ids], dtype=torch.int64, device=device
        )
    )
    row_embeds = torch.split(all_embeds, [len(ids) for ids in text_ids])

    for b in range(batch_size):
        response = responses[b]
        text_embeds = row_embeds[b]

        num_prefix = len(prefix_ids[b])
        num_suffix = len(suffix_ids[b])
        speech_row = speech[b, : speech_lens[b]].to(text_embeds.dtype)

        parts = [
            text_embeds[:num_prefix],
            speech_row,
            text_embeds[num_prefix : num_prefix + num_suffix],
        ]
        if response:
            # Teacher forcing: the last response token is only a target.
            parts.append(text_embeds[num_prefix + num_suffix : -1])
        row = torch.cat(parts)

        length = row.size(0)
        row_targets = torch.zeros(length, dtype=torch.int64, device=device)
        row_mask = torch.zeros(length, dtype=torch.bool, device=device)
        if response:
            first = num_prefix + speech_lens[b] + num_suffix - 1
            row_targets[first : first + len(response)] = torch.tensor(
                response, device=device
            )
            row_mask[first : first + len(response)] = True

        rows.append(row)
        targets.append(row_targets)
        masks.append(row_mask)
        offsets.append(num_prefix)

    lengths = [r.size(0) for r in rows]
    width = max(lengths)
    dim = rows[0].size(-1)

    embeds = rows[0].new_zeros(batch_size, width, dim)
    target_ids = torch.zeros(batch_size, width, dtype=torch.int64, device=device)
    target_mask = torch.zeros(batch_size, width, dtype=torch.bool, device=device)
    for b, (row, row_targets, row_mask) in enumerate(
        zip(rows, targets, masks, strict=True)
    ):
        embeds[b, : lengths[b]] = row
        target_ids[b, : lengths[b]] = row_targets
        target_mask[b, : lengths[b]] = row_mask

    return AssembledInputs(
        embeds=embeds,
        layout=BatchLayout.of(embeds, lengths),
        speech_offsets=offsets,
        target_ids=target_ids,
        target_mask=target_mask,
    )
