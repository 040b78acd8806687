"""CIF's quantity loss (Dong & Xu, 2020): the firing weights of an utterance
must add up to its number of tokens, so that inference fires once per token."""

from __future__ import annotations

from torch import Tensor


def cif_quantity_loss(weight_sums: Tensor, target_lens: Tensor) -> Tensor:
    """Mean over rows of ``|sum(weights) - tokens|``.

    :param weight_sums: ``[B]`` the sums of the unscaled firing weights.
    :param target_lens: ``[B]`` tokens per row.
    """
    return (weight_sums.float() - target_lens.float()).abs().mean()
