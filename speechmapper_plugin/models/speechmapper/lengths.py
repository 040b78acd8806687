"""Exact output lengths of the projector, computable without building it.

Datasets and losses need to know how many speech embeddings an utterance will
produce (to skip transcripts that cannot fit) long before a model exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from speechmapper_plugin.models.speechmapper.config import SpeechMapperConfig

LengthT = TypeVar("LengthT", int, Tensor)


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


def output_length(
    config: SpeechMapperConfig, input_length: LengthT, *, pre_averaged: bool = False
) -> LengthT:
    """The number of speech embeddings for ``input_length`` SFM frames.

    :param pre_averaged: ``input_length`` counts frames that were already
        averaged ``config.frame_averaging``:1 (as in a feature store).
    """
    length = input_length
    if not pre_averaged and config.frame_averaging > 1:
        length = length // config.frame_averaging
    for block in config.blocks:
        length = conv_output_length(
            length, block.conv_kernel_size, block.conv_stride, block.conv_padding
        )
    return length


def min_input_frames(config: SpeechMapperConfig, *, pre_averaged: bool = False) -> int:
    """The shortest input (in frames) that yields at least one output position."""
    needed = 1
    for block in reversed(config.blocks):
        needed = max(
            (needed - 1) * block.conv_stride
            + block.conv_kernel_size
            - 2 * block.conv_padding,
            1,
        )
    if not pre_averaged:
        needed *= config.frame_averaging
    return needed
