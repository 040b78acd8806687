"""Stage-2 mixing: ``L_stage2 = (1 − σ) · CE + σ · MSE``.

CE is the frozen LLM's cross-entropy on the response tokens; MSE is the stage-1
loss (:func:`~speechmapper_plugin.losses.transcript_mse_loss`) of the speech
embeddings against the transcript. A high σ (> 0.8) anchors the projector to
the embedding space and keeps it task-agnostic; σ = 0 is pure CE.

The σ endpoints are decided here and nowhere else: :func:`uses_ce` and
:func:`uses_mse` say which terms a σ needs computed (σ = 1 never runs the LLM,
σ = 0 never computes the MSE), and :func:`mixed_ce_mse_loss` leaves a term
with weight 0 out of the total entirely, so that a non-finite value in it
cannot reach the loss or its gradient.
"""

from __future__ import annotations

from torch import Tensor


def check_sigma(sigma: float) -> None:
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"`sigma` must be in [0, 1], but is {sigma}.")


def uses_ce(sigma: float) -> bool:
    """Whether the CE term has weight (σ < 1): else the LLM need not run."""
    check_sigma(sigma)
    return sigma < 1.0


def uses_mse(sigma: float) -> bool:
    """Whether the MSE term has weight (σ > 0): else it need not be computed."""
    check_sigma(sigma)
    return sigma > 0.0


def mixed_ce_mse_loss(
    ce: Tensor | None,
    mse: Tensor | None,
    *,
    sigma: float,
    empty: Tensor | None = None,
) -> Tensor:
    """Combines the two terms; a term with weight 0 is left out entirely.

    :param ce: the cross-entropy term (a scalar); may be ``None`` only at
        σ = 1, where it has no weight.
    :param mse: the MSE term (a scalar), or ``None`` when no example of the
        batch has a transcript: the batch then trains with ``(1 − σ) · CE``
        alone (the CE weight is the same in every batch, not renormalised).
    :param empty: returned when nothing has weight (σ = 1 and no transcript):
        a zero that keeps the graph, for DDP's backward on every rank.
    :raises ValueError: if ``ce`` is missing at σ < 1, or nothing has weight
        and no ``empty`` is given.
    """
    total: Tensor | None = None

    if uses_ce(sigma):
        if ce is None:
            raise ValueError(f"The CE term is required at `sigma` = {sigma} < 1.")
        total = ce if sigma == 0.0 else (1.0 - sigma) * ce

    if uses_mse(sigma) and mse is not None:
        term = mse if sigma == 1.0 else sigma * mse
        total = term if total is None else total + term

    if total is None:
        if empty is None:
            raise ValueError(
                "At `sigma` = 1 a batch without any transcript has no loss term; pass `empty`."
            )
        return empty

    return total
