"""The stage-1 objective on one batch: the projector's outputs regressed onto
the transcript's token embeddings (:func:`transcript_mse_loss`), plus the
optional auxiliary terms: the embedding CTC loss of any projector, the CTC loss
of a ``ctc_compression`` adapter's head and CIF's quantity loss.

Stage 2 reads its MSE term off the same batch fields
(:class:`Stage1Batch`): a transcript is padded ids and their lengths in both
stages, so the two stages' MSE sees the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn import Module

from speechmapper_plugin.losses.ctc import CTCLoss, ctc_head_loss, embedding_ctc_loss
from speechmapper_plugin.losses.embedding_mse import (
    EmbeddingMSELoss,
    transcript_mse_loss,
)
from speechmapper_plugin.losses.quantity import cif_quantity_loss
from speechmapper_plugin.models.adapters import AdapterAux, AlignmentTargets

if TYPE_CHECKING:
    from speechmapper_plugin.llm.target_embeddings import TargetLLMEmbeddings


class Stage1Batch(Protocol):
    """What the losses read of a batch (the dataset families' batches have
    these fields): pre-averaged features, right-padded, and the transcripts'
    MSE target ids (of :meth:`TargetLLMEmbeddings.encode`), right-padded with
    any valid id; ``target_lens`` is 0 where a row has no transcript."""

    features: Tensor
    feature_lens: Tensor
    target_ids: Tensor
    target_lens: Tensor


@dataclass(frozen=True)
class Stage1Weights:
    """The terms of stage 1's loss and their weights."""

    alpha: float
    """Word-to-pad ratio of the MSE (fixed-rate projectors)."""

    per_token: bool = False
    """Variable-length adapters: one output per transcript token (the adapter
    is given the targets), so the MSE has no pad positions."""

    ctc_weight: float = 0.0
    """The auxiliary embedding CTC loss (0 = off)."""

    ctc_temperature: float = 0.1

    quantity_weight: float = 1.0
    """CIF's quantity loss."""

    adapter_ctc_weight: float = 1.0
    """The CTC loss of the ``ctc_compression`` adapter's head."""


@dataclass(frozen=True)
class Stage1Loss:
    total: Tensor
    mse: EmbeddingMSELoss
    ctc: CTCLoss | None
    quantity: Tensor | None

    outputs: Tensor
    """``[B, T, D]`` the projector outputs the loss was computed on (stage-1
    validation scores them against the embedding table)."""

    output_layout: BatchLayout


def stage1_loss(
    projector: Module,
    batch: Stage1Batch,
    *,
    targets: TargetLLMEmbeddings,
    weights: Stage1Weights,
) -> Stage1Loss:
    """
    :param projector: the projector or adapter (possibly DDP-wrapped); the
        features are pre-averaged, as in a feature store.
    :param targets: the MSE targets (table, pad row) of the transcript ids.
    """
    features = batch.features.to(torch.float32)
    layout = BatchLayout.of(features, batch.feature_lens.tolist())

    aux = AdapterAux()
    if weights.per_token:
        outputs, out_layout = projector(
            features,
            layout,
            pre_averaged=True,
            targets=AlignmentTargets(batch.target_ids, batch.target_lens),
            aux=aux,
        )
    else:
        outputs, out_layout = projector(features, layout, pre_averaged=True)

    out_lens = out_layout.seq_lens_pt.to(outputs.device)

    mse = transcript_mse_loss(
        outputs,
        out_lens,
        batch.target_ids,
        batch.target_lens,
        targets,
        # One output per token: only word positions, at full weight.
        alpha=10.0 if weights.per_token else weights.alpha,
    )
    total = mse.total

    ctc: CTCLoss | None = None
    if aux.ctc_log_probs is not None and aux.ctc_lens is not None:
        ctc = ctc_head_loss(
            aux.ctc_log_probs,
            aux.ctc_lens.to(outputs.device),
            batch.target_ids,
            batch.target_lens,
            blank=aux.ctc_log_probs.size(-1) - 1,
        )
        total = total + weights.adapter_ctc_weight * ctc.total
    elif weights.ctc_weight > 0.0:
        ctc = embedding_ctc_loss(
            outputs,
            out_lens,
            targets.table,
            batch.target_ids,
            batch.target_lens,
            blank=targets.pad_idx,
            temperature=weights.ctc_temperature,
        )
        total = total + weights.ctc_weight * ctc.total

    quantity: Tensor | None = None
    if aux.weight_sums is not None:
        quantity = cif_quantity_loss(aux.weight_sums, batch.target_lens)
        total = total + weights.quantity_weight * quantity

    return Stage1Loss(total, mse, ctc, quantity, outputs, out_layout)
