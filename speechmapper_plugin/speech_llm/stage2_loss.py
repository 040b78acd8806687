"""The stage-2 objective on one batch: CE through the frozen LLM on the
response tokens, MSE of the speech embeddings against the transcript.

``L2 = (1 − σ) · CE + σ · MSE``. At σ = 1 the LLM is not run at all (only MSE
trains); at σ = 0 the MSE is not computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn import Module
from torch.nn.functional import cross_entropy, embedding

from speechmapper_plugin.datasets.batching import pad_sequences
from speechmapper_plugin.generation import embed_token_ids
from speechmapper_plugin.losses import (
    EmbeddingMSELoss,
    check_sigma,
    embedding_mse_loss,
    mixed_ce_mse_loss,
)
from speechmapper_plugin.speech_llm.assemble import assemble_inputs


@dataclass
class Stage2Loss:
    total: Tensor
    ce: Tensor | None
    """Mean CE per response token (``None`` when σ = 1)."""

    mse: EmbeddingMSELoss | None
    """The MSE term over the rows with a transcript (``None`` when σ = 0 or
    when no row of the batch has one)."""

    num_response_tokens: int
    num_mse_rows: int


def response_cross_entropy(
    llm: TransformerLM,
    speech: Tensor,
    speech_lens: Sequence[int],
    prefix_ids: Sequence[Sequence[int]],
    suffix_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
) -> tuple[Tensor, int]:
    """Mean CE of the LLM on the response tokens, and their number."""
    inputs = assemble_inputs(
        partial(embed_token_ids, llm),
        prefix_ids,
        speech,
        speech_lens,
        suffix_ids,
        response_ids,
    )
    hidden = llm.decoder(inputs.embeds, inputs.layout)
    # Project only the positions that predict a response token: the
    # vocabulary projection is the most expensive part for a 128k vocabulary.
    logits = llm.final_proj(hidden[inputs.target_mask])
    targets = inputs.target_ids[inputs.target_mask]
    return cross_entropy(logits.float(), targets), inputs.num_targets


def stage2_loss(
    projector: Module,
    llm: TransformerLM,
    features: Tensor,
    feature_lens: Tensor,
    prefix_ids: Sequence[Sequence[int]],
    suffix_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    transcript_ids: Sequence[Sequence[int] | None],
    *,
    embedding_table: Tensor,
    pad_idx: int,
    sigma: float,
    alpha: float,
    compute_all: bool = False,
) -> Stage2Loss:
    """
    :param projector: the projector (possibly DDP-wrapped); ``features`` are
        pre-averaged, as in a feature store.
    :param embedding_table: the LLM's token embeddings (MSE targets).
    :param compute_all: compute both terms even at an endpoint σ (for
        validation metrics); the total still leaves the other term out.
    """
    check_sigma(sigma)

    layout = BatchLayout.of(features, feature_lens.tolist())
    speech, speech_layout = projector(features.float(), layout, pre_averaged=True)
    speech_lens = speech_layout.seq_lens

    ce: Tensor | None = None
    num_tokens = 0
    if sigma < 1.0 or compute_all:
        ce, num_tokens = response_cross_entropy(
            llm, speech, speech_lens, prefix_ids, suffix_ids, response_ids
        )

    mse: EmbeddingMSELoss | None = None
    # A transcript longer than the speech embeddings has no MSE target: the
    # datasets leave such rows out for fixed-rate projectors; a
    # variable-length adapter (CIF, CTC compression) decides its length here.
    rows = [i for i, t in enumerate(transcript_ids) if t and len(t) <= speech_lens[i]]
    if (sigma > 0.0 or compute_all) and rows:
        transcripts = [torch.tensor(transcript_ids[i], dtype=torch.int64) for i in rows]
        ids, lens = pad_sequences(transcripts)
        ids, lens = ids.to(speech.device), lens.to(speech.device)
        index = torch.tensor(rows, device=speech.device)
        mse = embedding_mse_loss(
            speech[index],
            speech_layout.seq_lens_pt.to(speech.device)[index],
            embedding(ids, embedding_table),
            lens,
            embedding_table[pad_idx],
            alpha=alpha,
        )

    if sigma == 1.0 and mse is None:
        # σ = 1 and no transcript in the batch: nothing to learn from it, but
        # keep the graph (DDP expects every rank to run backward).
        total = speech.sum() * 0.0
    elif sigma == 1.0:
        assert mse is not None
        total = mse.total
    else:
        assert ce is not None
        total = mixed_ce_mse_loss(ce, None if mse is None else mse.total, sigma=sigma)

    return Stage2Loss(
        total=total,
        ce=ce,
        mse=mse,
        num_response_tokens=num_tokens,
        num_mse_rows=len(rows) if mse is not None else 0,
    )
