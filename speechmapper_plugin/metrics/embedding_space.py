"""LLM-free quality signals for stage 1: how close are the speech embeddings to
the transcript's token embeddings, and what text do they spell?

*Embedding-space decoding* maps each output position to the token whose
embedding is nearest by cosine similarity, drops pad tokens and detokenises.
Its WER against the transcript tells how good a projector is before any LLM is
attached (and costs one matrix product per validation batch).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import normalize


@torch.no_grad()
def nearest_token_ids(
    embeds: Tensor, table: Tensor, *, chunk_size: int = 256
) -> Tensor:
    """The id of the nearest embedding-table row (cosine) for each position.

    :param embeds: ``[..., D]`` speech embeddings.
    :param table: ``[V, D]`` the LLM's token-embedding table.
    :param chunk_size: positions scored at once (bounds memory to
        ``chunk_size × V`` similarities).
    :returns: ``[...]`` token ids.
    """
    flat = embeds.reshape(-1, embeds.size(-1))
    unit_table = normalize(table.float(), dim=-1)
    ids = []
    for start in range(0, flat.size(0), chunk_size):
        chunk = normalize(flat[start : start + chunk_size].float(), dim=-1)
        ids.append((chunk @ unit_table.T).argmax(dim=-1))
    if not ids:
        return torch.zeros(embeds.shape[:-1], dtype=torch.int64, device=embeds.device)
    return torch.cat(ids).reshape(embeds.shape[:-1])


def drop_pad_ids(ids: Tensor, length: int, pad_idx: int) -> list[int]:
    """The decoded ids of the first ``length`` positions, without pad tokens."""
    return [i for i in ids[:length].tolist() if i != pad_idx]


def word_position_cosine(
    outputs: Tensor, targets: Tensor, word_mask: Tensor
) -> tuple[Tensor, int]:
    """Sum of cosine similarities on word positions and their number."""
    cosine = torch.nn.functional.cosine_similarity(
        outputs.float(), targets.float(), dim=-1
    )
    cosine = torch.where(word_mask, cosine, cosine.new_zeros(()))
    return cosine.sum(), int(word_mask.sum())
