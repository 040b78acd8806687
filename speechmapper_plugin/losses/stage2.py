"""The stage-2 objective on one batch: CE through the frozen LLM on the
response tokens, and the stage-1 loss of the speech embeddings against the
transcript, mixed as ``L_stage2 = (1 − σ) · CE + σ · MSE``
(:func:`~speechmapper_plugin.losses.mixed_ce_mse_loss`, which also decides
what the σ endpoints skip: the LLM forward at σ = 1, the MSE at σ = 0).

The MSE term is :func:`~speechmapper_plugin.losses.transcript_mse_loss`, the
stage-1 loss itself, with a
:class:`~speechmapper_plugin.llm.TargetLLMEmbeddings` built with the stage-1
transcript policy: a transcript has the same targets in both stages.

How rows and batches without a transcript are weighted (instruction rows such
as spoken QA may have none):

- CE is the mean over all response tokens of the batch, transcript or not;
- MSE is the stage-1 loss over the rows that have a transcript that fits the
  speech embeddings (mean over their positions), with weight σ whatever
  fraction of the batch they are;
- a batch with no such row trains with ``(1 − σ) · CE`` alone: the CE weight
  is the same in every batch, never renormalised to 1; at σ = 1 such a batch
  has a zero loss (which keeps the graph for DDP).

A variable-length adapter (``cif``, ``ctc_compression``) also trains its own
losses (:func:`~speechmapper_plugin.losses.adapter.adapter_losses`: its CTC
head, CIF's quantity) when given ``adapter_weights``, added to the mix at
every σ as stage 1 adds them to the MSE: a fresh adapter trained by stage 2
alone needs them to learn where tokens are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn import Module
from torch.nn.functional import cross_entropy

from speechmapper_plugin.llm.assemble import assemble_inputs
from speechmapper_plugin.llm.embeddings import embed_token_ids
from speechmapper_plugin.losses.adapter import (
    AdapterLosses,
    AdapterLossWeights,
    adapter_losses,
)
from speechmapper_plugin.losses.embedding_mse import (
    EmbeddingMSELoss,
    transcript_mse_loss,
)
from speechmapper_plugin.losses.mixed import mixed_ce_mse_loss, uses_ce, uses_mse
from speechmapper_plugin.losses.stage1 import Stage1Batch
from speechmapper_plugin.models.adapters import AdapterAux

if TYPE_CHECKING:
    from speechmapper_plugin.llm.target_embeddings import TargetLLMEmbeddings


class Stage2Batch(Stage1Batch, Protocol):
    """A stage-1 batch plus the prompt around the speech and the response
    (the CE target), as token ids per row."""

    prefix_ids: list[tuple[int, ...]]
    suffix_ids: list[tuple[int, ...]]
    response_ids: list[tuple[int, ...]]


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

    adapter: AdapterLosses | None = None
    """The variable-length adapter's own losses (with ``adapter_weights``)."""


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
    batch: Stage2Batch,
    *,
    targets: TargetLLMEmbeddings,
    sigma: float,
    alpha: float,
    compute_all: bool = False,
    adapter_weights: AdapterLossWeights | None = None,
) -> Stage2Loss:
    """
    :param projector: the projector (possibly DDP-wrapped); the batch's
        features are pre-averaged, as in a feature store.
    :param batch: its ``target_ids`` are, per row, the ids of
        :meth:`TargetLLMEmbeddings.encode` of its transcript (``target_lens``
        0 where it has none), as in stage 1.
    :param targets: the MSE targets (table, pad row), as in stage 1.
    :param compute_all: compute both terms even at an endpoint σ (for
        validation metrics); the total still leaves the other term out.
    :param adapter_weights: a variable-length adapter (only): also train its
        own losses, with these weights.
    """
    features = batch.features
    layout = BatchLayout.of(features, batch.feature_lens.tolist())
    aux = AdapterAux()
    if adapter_weights is None:
        speech, speech_layout = projector(features.float(), layout, pre_averaged=True)
    else:
        speech, speech_layout = projector(
            features.float(), layout, pre_averaged=True, aux=aux
        )

    ce: Tensor | None = None
    num_tokens = 0
    if uses_ce(sigma) or compute_all:
        ce, num_tokens = response_cross_entropy(
            llm,
            speech,
            speech_layout.seq_lens,
            batch.prefix_ids,
            batch.suffix_ids,
            batch.response_ids,
        )

    mse: EmbeddingMSELoss | None = None
    # A transcript longer than the speech embeddings has no MSE target: the
    # datasets leave such rows out for fixed-rate projectors; a
    # variable-length adapter (CIF, CTC compression) decides its length here.
    device = speech.device
    speech_lens = speech_layout.seq_lens_pt.to(device)
    target_lens = batch.target_lens.to(device)
    rows = ((target_lens > 0) & (target_lens <= speech_lens)).nonzero().flatten()
    num_rows = rows.numel()
    if (uses_mse(sigma) or compute_all) and num_rows:
        mse = transcript_mse_loss(
            speech[rows],
            speech_lens[rows],
            batch.target_ids.to(device)[rows],
            target_lens[rows],
            targets,
            alpha=alpha,
        )

    total = mixed_ce_mse_loss(
        ce,
        None if mse is None else mse.total,
        sigma=sigma,
        # Nothing to learn from the batch, but every rank runs backward.
        empty=speech.sum() * 0.0,
    )

    adapter: AdapterLosses | None = None
    if adapter_weights is not None:
        adapter = adapter_losses(
            aux, batch.target_ids, batch.target_lens, adapter_weights
        )
        if adapter.total is not None:
            total = total + adapter.total

    return Stage2Loss(
        total=total,
        ce=ce,
        mse=mse,
        num_response_tokens=num_tokens,
        num_mse_rows=num_rows if mse is not None else 0,
        adapter=adapter,
    )
