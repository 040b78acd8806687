"""The variable-length adapters' own losses, trained beside the MSE (stage 1)
and beside CE through the LLM (stage 2): the CTC loss of a ``ctc_compression``
head and CIF's quantity loss, on the rows that have a transcript.

Without them a ``cif`` or ``ctc_compression`` adapter trained by stage 2 alone
(a fresh adapter, as Verdini et al. and Gaido et al. train theirs) would have
its length decided by an untrained head.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from speechmapper_plugin.losses.ctc import CTCLoss, ctc_head_loss
from speechmapper_plugin.losses.quantity import cif_quantity_loss
from speechmapper_plugin.models.adapters import AdapterAux


@dataclass(frozen=True)
class AdapterLossWeights:
    ctc: float = 1.0
    """The CTC loss of the ``ctc_compression`` adapter's head."""

    quantity: float = 1.0
    """CIF's quantity loss."""


@dataclass(frozen=True)
class AdapterLosses:
    total: Tensor | None
    """The weighted sum (``None``: the adapter filled nothing, or no row has
    a transcript)."""

    ctc: CTCLoss | None
    quantity: Tensor | None


def adapter_losses(
    aux: AdapterAux,
    target_ids: Tensor,
    target_lens: Tensor,
    weights: AdapterLossWeights,
) -> AdapterLosses:
    """The losses of what a forward pass put in ``aux``.

    :param target_ids: ``[B, S]`` the transcripts' right-padded ids (the
        target LLM's tokens), ``target_lens`` 0 where a row has none.
    """
    total: Tensor | None = None

    ctc: CTCLoss | None = None
    if aux.ctc_log_probs is not None and aux.ctc_lens is not None:
        log_probs = aux.ctc_log_probs
        device = log_probs.device
        ctc = ctc_head_loss(
            log_probs,
            aux.ctc_lens.to(device),
            target_ids.to(device),
            target_lens.to(device),
            blank=log_probs.size(-1) - 1,
        )
        if ctc.num_rows:
            total = weights.ctc * ctc.total

    quantity: Tensor | None = None
    if aux.weight_sums is not None:
        rows = (target_lens > 0).to(aux.weight_sums.device)
        if bool(rows.any()):
            quantity = cif_quantity_loss(
                aux.weight_sums[rows], target_lens.to(rows.device)[rows]
            )
            term = weights.quantity * quantity
            total = term if total is None else total + term

    return AdapterLosses(total, ctc, quantity)
