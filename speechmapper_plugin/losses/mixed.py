"""Stage-2 loss: ``L2 = (1 − σ) · CE + σ · MSE``.

CE is the frozen LLM's cross-entropy on the response tokens; MSE is the stage-1
loss (:func:`~speechmapper_plugin.losses.embedding_mse_loss`) of the speech
embeddings against the transcript. A high σ (> 0.8) anchors the projector to
the embedding space and keeps it task-agnostic; σ = 0 is pure CE.
"""

from __future__ import annotations

from torch import Tensor


def check_sigma(sigma: float) -> None:
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"`sigma` must be in [0, 1], but is {sigma}.")


def mixed_ce_mse_loss(ce: Tensor, mse: Tensor | None, *, sigma: float) -> Tensor:
    """Combines the two terms; an endpoint σ leaves the other term out entirely.

    :param ce: the cross-entropy term (a scalar).
    :param mse: the MSE term (a scalar), or ``None`` when no example of the
        batch has a transcript; the MSE term then contributes nothing.
    """
    check_sigma(sigma)

    if sigma == 0.0:
        return ce

    if mse is None:
        return (1.0 - sigma) * ce

    if sigma == 1.0:
        return mse

    return (1.0 - sigma) * ce + sigma * mse
