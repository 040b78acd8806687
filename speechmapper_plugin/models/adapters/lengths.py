"""Output lengths of the adapters, computable without building them.

Fixed-rate adapters (``base``, ``conv``, ``wlq_former``, ``qformer``) have an
exact length for every input length. For the variable-length adapters (``cif``,
``ctc_compression``) the number of outputs depends on what is said; what the
configuration fixes is an upper bound (one output per frame after averaging),
which datasets use to skip transcripts that could never fit. Their exact
lengths are the ones a forward pass reports in its layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from speechmapper_plugin.models.speechmapper.lengths import conv_output_length

if TYPE_CHECKING:
    from speechmapper_plugin.models.adapters.config import AdapterConfig

LengthT = TypeVar("LengthT", int, Tensor)


def _ceil_div(length: LengthT, divisor: int) -> LengthT:
    if isinstance(length, Tensor):
        return torch.div(length + divisor - 1, divisor, rounding_mode="floor")
    return (length + divisor - 1) // divisor


def averaged_length(
    config: AdapterConfig, input_length: LengthT, *, pre_averaged: bool
) -> LengthT:
    """Frames after ``frame_averaging`` (a trailing remainder is dropped)."""
    if pre_averaged or config.frame_averaging == 1:
        return input_length
    return input_length // config.frame_averaging


def max_output_length(
    config: AdapterConfig, input_length: LengthT, *, pre_averaged: bool = False
) -> LengthT:
    """The number of outputs for ``input_length`` SFM frames: exact for the
    fixed-rate kinds, an upper bound for ``cif`` and ``ctc_compression``
    (0 = too short)."""
    length = averaged_length(config, input_length, pre_averaged=pre_averaged)

    if config.kind in ("base", "cif", "ctc_compression"):
        return length

    if config.kind == "conv":
        for _ in range(config.num_conv_layers):
            length = conv_output_length(
                length, config.conv_kernel_size, config.conv_stride, config.conv_padding
            )
        return length

    if config.kind == "wlq_former":
        return _ceil_div(length, config.window_size) * config.num_queries

    if config.kind == "qformer":
        if isinstance(length, Tensor):
            return torch.where(length > 0, config.num_queries, 0)
        return config.num_queries if length > 0 else 0

    raise ValueError(f"Unknown adapter kind '{config.kind}'.")


def min_input_frames(config: AdapterConfig, *, pre_averaged: bool = False) -> int:
    """The shortest input (in frames) that yields at least one output."""
    needed = 1
    if config.kind == "conv":
        for _ in range(config.num_conv_layers):
            needed = max(
                (needed - 1) * config.conv_stride
                + config.conv_kernel_size
                - 2 * config.conv_padding,
                1,
            )
    if not pre_averaged:
        needed *= config.frame_averaging
    return needed
