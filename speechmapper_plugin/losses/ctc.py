"""CTC losses of stage 1.

- :func:`ctc_head_loss`: the loss of a CTC head's log-probabilities (the
  ``ctc_compression`` adapter's own head over the target LLM's vocabulary).
- :func:`embedding_ctc_loss`: the auxiliary CTC loss for any projector (the
  SpeechMapper projector included): the logits of an output position are its
  cosine similarities with the LLM's token embeddings (the embedding table is
  the output layer, so no head is added to the projector), divided by a
  temperature; the pad token is the blank, as the stage-1 targets already
  use the pad embedding for "no word here". It pushes the projector to emit
  each token once, the repetitions the SpeechMapper paper leaves open.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.functional import ctc_loss, log_softmax, normalize


@dataclass(frozen=True)
class CTCLoss:
    total: Tensor
    """Mean over the rows used of the per-row loss divided by its tokens."""

    num_rows: int
    """Rows used: those with at least one token and enough positions."""


def ctc_head_loss(
    log_probs: Tensor,
    input_lens: Tensor,
    target_ids: Tensor,
    target_lens: Tensor,
    *,
    blank: int,
) -> CTCLoss:
    """
    :param log_probs: ``[B, T, C]`` log-probabilities.
    :param target_ids: ``[B, S]`` right-padded targets (never ``blank``).
    """
    if bool(((target_ids == blank) & _token_mask(target_ids, target_lens)).any()):
        raise ValueError(
            f"A target token is the CTC blank ({blank}); choose another blank (for the auxiliary loss: another `target_llm.pad_token`)."
        )

    usable = (target_lens > 0) & (target_lens <= input_lens)
    num_rows = int(usable.sum())
    if num_rows == 0:
        return CTCLoss(log_probs.sum() * 0.0, 0)

    index = torch.nonzero(usable).flatten()
    losses = ctc_loss(
        log_probs[index].transpose(0, 1).float(),
        target_ids[index],
        input_lens[index],
        target_lens[index],
        blank=blank,
        reduction="none",
        zero_infinity=True,
    )
    total = (losses / target_lens[index].float()).mean()
    return CTCLoss(total, num_rows)


def embedding_ctc_loss(
    outputs: Tensor,
    output_lens: Tensor,
    embedding_table: Tensor,
    target_ids: Tensor,
    target_lens: Tensor,
    *,
    blank: int,
    temperature: float = 0.1,
) -> CTCLoss:
    """The auxiliary CTC loss with the embedding table as the output layer.

    :param outputs: ``[B, T, D]`` projector outputs.
    :param embedding_table: ``[V, D]`` the target LLM's token embeddings.
    :param blank: the blank's token id (the pad token).
    """
    if temperature <= 0.0:
        raise ValueError(f"`temperature` must be positive, but is {temperature}.")

    logits = (
        normalize(outputs.float(), dim=-1)
        @ normalize(embedding_table.float(), dim=-1).T
    )
    log_probs = log_softmax(logits / temperature, dim=-1)
    return ctc_head_loss(log_probs, output_lens, target_ids, target_lens, blank=blank)


def _token_mask(target_ids: Tensor, target_lens: Tensor) -> Tensor:
    positions = torch.arange(target_ids.size(1), device=target_ids.device)
    return positions.unsqueeze(0) < target_lens.unsqueeze(1)
