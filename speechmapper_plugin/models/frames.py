"""Padded frame sequences ``[B, T, D]`` as speech encoders, adapters and the
projector pass them on: padding zeroed, frames averaged.

Its own module because both the speech-encoder families and the projector
families use it, and neither should import the other for it.
"""

from __future__ import annotations

import torch
from fairseq2.nn.utils.mask import apply_mask
from torch import Tensor


def valid_positions(seq_lens: Tensor, width: int) -> Tensor:
    """``[B, width]``: ``True`` before each row's length.

    Unlike fairseq2's ``BatchLayout``, lengths may be 0 and stay on the device
    (no host sync).
    """
    positions = torch.arange(width, device=seq_lens.device)
    return positions.unsqueeze(0) < seq_lens.unsqueeze(1)


def zero_padding(seqs: Tensor, seq_lens: Tensor) -> Tensor:
    """Zero the positions at or beyond each row's length (``seqs``: [B, T, ...]).

    fairseq2's ``apply_mask`` selects (``where``) rather than multiplies, so
    padding that holds NaN or inf becomes zero too.
    """
    return apply_mask(seqs, valid_positions(seq_lens, seqs.size(1)))


def average_frames(
    seqs: Tensor, seq_lens: Tensor, factor: int
) -> tuple[Tensor, Tensor]:
    """Average ``factor`` consecutive frames; a trailing remainder is dropped."""
    if factor == 1:
        return seqs, seq_lens
    batch_size, width, dim = seqs.shape
    usable = (width // factor) * factor
    seqs = seqs[:, :usable].reshape(batch_size, usable // factor, factor, dim)
    return seqs.mean(dim=2), torch.div(seq_lens, factor, rounding_mode="floor")
