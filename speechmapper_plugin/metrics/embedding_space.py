"""LLM-free quality signals for stage 1: how close are the speech embeddings to
the transcript's token embeddings, and what text do they spell?

*Embedding-space decoding* maps each output position to the token whose
embedding is nearest by cosine similarity, drops pad tokens and detokenises.
Its WER against the transcript tells how good a projector is before any LLM is
attached (and costs one matrix product per validation batch).

The pad target needs care: Llama 3.1's pad token ``<|finetune_right_pad_id|>``
was a reserved token, and reserved Llama-3 rows are reported to be untrained,
all zero or near zero. Cosine against a zero row is 0 (never the nearest) and
against a tiny row is noise, so a position that hits its pad target exactly
would decode as a junk token. Decoding therefore takes the pad *vector* too: a
position closer (Euclidean) to the pad target than to its cosine-nearest row
is a pad position.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import normalize


@torch.no_grad()
def nearest_token_ids(
    embeds: Tensor,
    table: Tensor,
    *,
    chunk_size: int = 256,
    pad_embedding: Tensor | None = None,
    pad_idx: int | None = None,
) -> Tensor:
    """The id of the nearest embedding-table row (cosine) for each position.

    :param embeds: ``[..., D]`` speech embeddings.
    :param table: ``[V, D]`` the LLM's token-embedding table.
    :param chunk_size: positions scored at once (bounds memory to
        ``chunk_size × V`` similarities).
    :param pad_embedding: ``[D]`` the pad target; with ``pad_idx``, a position
        at least as close (Euclidean) to it as to its cosine-nearest row
        decodes as ``pad_idx``, whatever the pad row's norm.
    :returns: ``[...]`` token ids.
    """
    if (pad_embedding is None) != (pad_idx is None):
        raise ValueError("`pad_embedding` and `pad_idx` must be given together.")

    flat = embeds.reshape(-1, embeds.size(-1)).float()
    table = table.float()
    unit_table = normalize(table, dim=-1)
    ids = []
    for start in range(0, flat.size(0), chunk_size):
        chunk = flat[start : start + chunk_size]
        best = (normalize(chunk, dim=-1) @ unit_table.T).argmax(dim=-1)
        if pad_embedding is not None and pad_idx is not None:
            to_pad = (chunk - pad_embedding.float()).norm(dim=-1)
            to_best = (chunk - table[best]).norm(dim=-1)
            best = torch.where(to_pad <= to_best, best.new_tensor(pad_idx), best)
        ids.append(best)
    if not ids:
        return torch.zeros(embeds.shape[:-1], dtype=torch.int64, device=embeds.device)
    return torch.cat(ids).reshape(embeds.shape[:-1])


def row_norm_ratio(table: Tensor, idx: int) -> tuple[float, float]:
    """The L2 norm of row ``idx`` and its ratio to the median row norm.

    Tells an untrained (zero or near-zero) row, such as a reserved Llama-3
    token's, from a trained one.
    """
    norm, median = row_norm_and_median(table, idx)
    return norm, (norm / median if median > 0 else float("inf"))


def row_norm_and_median(table: Tensor, idx: int) -> tuple[float, float]:
    """The L2 norm of row ``idx`` and the median L2 norm of all rows (both
    are named when a pad row is refused; a zero row's ratio loses the median)."""
    # Through one reused float32 buffer of row chunks: a float32 copy of a whole
    # bf16 table would double it (and fresh chunk copies fragment the heap).
    norms = torch.empty(table.size(0), dtype=torch.float32, device=table.device)
    buffer = torch.empty(
        min(1024, table.size(0)),
        table.size(1),
        dtype=torch.float32,
        device=table.device,
    )
    for start in range(0, table.size(0), buffer.size(0)):
        rows = table[start : start + buffer.size(0)]
        chunk = buffer[: rows.size(0)]
        chunk.copy_(rows)
        norms[start : start + rows.size(0)] = chunk.norm(dim=-1)
    return float(norms[idx]), float(norms.median())


def drop_pad_ids(ids: Tensor, length: int, pad_idx: int) -> list[int]:
    """The decoded ids of the first ``length`` positions, without pad tokens."""
    return [i for i in ids[:length].tolist() if i != pad_idx]


def word_position_cosine(
    outputs: Tensor,
    targets: Tensor,
    word_mask: Tensor,
    *,
    relative_norm_floor: float = 1e-3,
) -> tuple[Tensor, int]:
    """Sum of cosine similarities on word positions and their number.

    Word positions include the first pad position (the end of the
    transcript). A target below ``relative_norm_floor`` × the median norm of
    the word-position targets has no meaningful direction (a zero or
    near-zero pad row), so such positions are left out of both the sum and
    the count.
    """
    cosine = torch.nn.functional.cosine_similarity(
        outputs.float(), targets.float(), dim=-1
    )
    norms = targets.float().norm(dim=-1)
    if bool(word_mask.any()):
        floor = relative_norm_floor * float(norms[word_mask].median())
        word_mask = word_mask & (norms > floor)
    cosine = torch.where(word_mask, cosine, cosine.new_zeros(()))
    return cosine.sum(), int(word_mask.sum())
