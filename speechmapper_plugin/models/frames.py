"""Padded frame sequences ``[B, T, D]`` as speech encoders, adapters and the
projector pass them on: padding zeroed, frames averaged, and the lengths that
strided convolutions leave them.

Its own module because both the speech-encoder families and the projector
families use it, and neither should import the other for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import torch
from fairseq2.nn.utils.mask import apply_mask
from torch import Tensor

LengthT = TypeVar("LengthT", int, Tensor)


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


ConvShape = tuple[int, int, int]
"""A Conv1d's ``(kernel_size, stride, padding)``."""


def conv_output_length(
    length: LengthT, kernel_size: int, stride: int, padding: int
) -> LengthT:
    """Length after a Conv1d; 0 for an empty input or a (padded) input shorter
    than the kernel."""
    padded = length + 2 * padding
    if isinstance(padded, Tensor):
        out = torch.div(padded - kernel_size, stride, rounding_mode="floor") + 1
        usable = (padded >= kernel_size) & (length > 0)
        return torch.where(usable, out, torch.zeros_like(out))
    if length < 1 or padded < kernel_size:
        return 0
    return (padded - kernel_size) // stride + 1


def conv_stack_output_length(length: LengthT, convs: Iterable[ConvShape]) -> LengthT:
    """Length after the Conv1d layers ``convs``, applied in order."""
    for kernel_size, stride, padding in convs:
        length = conv_output_length(length, kernel_size, stride, padding)
    return length


def conv_stack_min_input_length(convs: Iterable[ConvShape]) -> int:
    """The shortest input that leaves one position after the Conv1d layers
    ``convs`` (applied in order): :func:`conv_stack_output_length` inverted."""
    needed = 1
    for kernel_size, stride, padding in reversed(list(convs)):
        needed = max((needed - 1) * stride + kernel_size - 2 * padding, 1)
    return needed
