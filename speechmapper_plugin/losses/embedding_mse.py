"""The stage-1 loss: MSE between speech embeddings and the LLM's text embeddings.

It is also stage 2's MSE term (:mod:`speechmapper_plugin.losses.stage2`): both
stages call :func:`transcript_mse_loss` with the same
:class:`~speechmapper_plugin.llm.TargetLLMEmbeddings`, so a transcript has the
same targets in both.

The projector emits more positions than the transcript has tokens. The target is
therefore the transcript's token embeddings followed by the pad token's
embedding repeated up to the projector's output length, and the error is split:

- ``MSE_word``: the transcript positions plus the first pad position (which
  teaches the model where the utterance ends);
- ``MSE_pad``: the remaining pad positions.

Both are averaged over valid (unpadded) positions and embedding dims of the whole
batch, and combined as in the paper's Eq. 1 with the word-to-pad ratio α:

    L_stage1 = (α · MSE_word + (10 − α) · MSE_pad) / 10,   α ∈ [1, 10]

α = 10 ignores the pad positions entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from speechmapper_plugin.llm.target_embeddings import TargetLLMEmbeddings


@dataclass(frozen=True)
class EmbeddingMSELoss:
    """The stage-1 loss and the parts recipes log."""

    total: Tensor
    """``L_stage1``, a scalar."""

    mse_word: Tensor
    """Mean squared error over word positions (transcript + first pad)."""

    mse_pad: Tensor
    """Mean squared error over the remaining pad positions (0 if there are none)."""

    num_word_positions: int
    num_pad_positions: int


class UntrainableRowsError(ValueError):
    """Raised when transcripts have more tokens than the projector emits positions."""

    def __init__(
        self, rows: list[int], target_lens: list[int], output_lens: list[int]
    ) -> None:
        details = ", ".join(
            f"row {r}: {t} tokens > {o} positions"
            for r, t, o in zip(rows, target_lens, output_lens, strict=True)
        )
        super().__init__(
            f"Transcripts longer than the projector output cannot be trained on ({details}). Filter them with `trainable_rows()` before computing the loss."
        )
        self.rows = rows


def check_alpha(alpha: float) -> None:
    if not 1.0 <= alpha <= 10.0:
        raise ValueError(f"`alpha` must be in [1, 10], but is {alpha}.")


def trainable_rows(output_lens: Tensor, target_lens: Tensor) -> Tensor:
    """Which rows can be trained on: the transcript fits into the output.

    :returns: A boolean tensor of shape ``[B]``.
    """
    return target_lens <= output_lens


def build_targets(
    target_embeds: Tensor, target_lens: Tensor, pad_embed: Tensor, length: int
) -> Tensor:
    """Transcript embeddings followed by ``pad_embed`` up to ``length`` positions.

    :param target_embeds: ``[B, S, D]`` right-padded token embeddings.
    :param target_lens: ``[B]`` number of tokens per row.
    :param pad_embed: ``[D]`` the pad token's embedding.
    :returns: ``[B, length, D]``.
    """
    batch_size, width, dim = target_embeds.shape

    if width < length:
        target_embeds = torch.nn.functional.pad(
            target_embeds, (0, 0, 0, length - width)
        )
    else:
        target_embeds = target_embeds[:, :length]

    positions = torch.arange(length, device=target_embeds.device)
    is_token = positions.unsqueeze(0) < target_lens.unsqueeze(1)  # [B, length]

    pad = pad_embed.to(target_embeds.dtype).expand(batch_size, length, dim)

    return torch.where(is_token.unsqueeze(-1), target_embeds, pad)


def position_masks(
    output_lens: Tensor, target_lens: Tensor, width: int
) -> tuple[Tensor, Tensor]:
    """Boolean ``[B, width]`` masks of the word and the pad positions."""
    positions = torch.arange(width, device=output_lens.device).unsqueeze(0)
    valid = positions < output_lens.unsqueeze(1)
    word = valid & (positions < (target_lens + 1).unsqueeze(1))
    pad = valid & ~word
    return word, pad


def embedding_mse_loss(
    outputs: Tensor,
    output_lens: Tensor,
    target_embeds: Tensor,
    target_lens: Tensor,
    pad_embed: Tensor,
    *,
    alpha: float = 9.0,
) -> EmbeddingMSELoss:
    """Computes the stage-1 loss (see the module docstring).

    :param outputs: ``[B, T, D]`` projector outputs; positions at or beyond
        ``output_lens`` are ignored.
    :param output_lens: ``[B]`` valid output positions per row.
    :param target_embeds: ``[B, S, D]`` transcript token embeddings; positions at
        or beyond ``target_lens`` are ignored.
    :param target_lens: ``[B]`` tokens per row.
    :param pad_embed: ``[D]`` the pad token's embedding.
    :raises UntrainableRowsError: if a transcript is longer than its output.
    """
    check_alpha(alpha)

    fits = trainable_rows(output_lens, target_lens)
    if not bool(fits.all()):
        rows = torch.nonzero(~fits).flatten().tolist()
        raise UntrainableRowsError(
            rows,
            [int(target_lens[r]) for r in rows],
            [int(output_lens[r]) for r in rows],
        )

    width, dim = outputs.size(1), outputs.size(2)

    targets = build_targets(target_embeds, target_lens, pad_embed, width)

    word_mask, pad_mask = position_masks(output_lens, target_lens, width)

    # Select rather than multiply, so that non-finite values at padded
    # positions cannot reach the loss or its gradient.
    sq_err = (outputs.float() - targets.float()).pow(2)
    zero = sq_err.new_zeros(())

    num_word = int(word_mask.sum())
    num_pad = int(pad_mask.sum())

    word_sum = torch.where(word_mask.unsqueeze(-1), sq_err, zero).sum()
    pad_sum = torch.where(pad_mask.unsqueeze(-1), sq_err, zero).sum()

    mse_word = word_sum / max(num_word * dim, 1)
    mse_pad = pad_sum / max(num_pad * dim, 1)

    total = (alpha * mse_word + (10.0 - alpha) * mse_pad) / 10.0

    return EmbeddingMSELoss(
        total=total,
        mse_word=mse_word,
        mse_pad=mse_pad,
        num_word_positions=num_word,
        num_pad_positions=num_pad,
    )


def transcript_mse_loss(
    outputs: Tensor,
    output_lens: Tensor,
    target_ids: Tensor,
    target_lens: Tensor,
    targets: TargetLLMEmbeddings,
    *,
    alpha: float = 9.0,
) -> EmbeddingMSELoss:
    """The stage-1 loss of ``outputs`` against the embeddings of transcript ids
    (from :meth:`TargetLLMEmbeddings.encode`), padded with ``targets``' pad row.

    The one entry point of both stages' MSE (see the module docstring).

    :param target_ids: ``[B, S]`` ids, right-padded with any valid id;
        positions at or beyond ``target_lens`` are ignored.
    """
    return embedding_mse_loss(
        outputs,
        output_lens,
        targets.embed(target_ids).to(outputs.device),
        target_lens.to(outputs.device),
        targets.pad_embedding.to(outputs.device),
        alpha=alpha,
    )
