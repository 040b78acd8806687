"""Output lengths of the adapters, computable without building them.

Fixed-rate adapters (``base``, ``conv``, ``wlq_former``, ``qformer``) have an
exact length for every input length. For the variable-length adapters (``cif``,
``ctc_compression``) the number of outputs depends on what is said; what the
configuration fixes is an upper bound (one output per frame after averaging),
which datasets use to skip transcripts that could never fit. Their exact
lengths are the ones a forward pass reports in its layout. The rule of each
kind is its entry's in ``kinds.py``; these functions add the averaging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from torch import Tensor

from speechmapper_plugin.models.adapters.kinds import adapter_kind

if TYPE_CHECKING:
    from speechmapper_plugin.models.adapters.config import AdapterConfig

LengthT = TypeVar("LengthT", int, Tensor)


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
    return adapter_kind(config.kind).output_length(config, length)


def min_input_frames(config: AdapterConfig, *, pre_averaged: bool = False) -> int:
    """The shortest input (in frames) that yields at least one output."""
    needed = adapter_kind(config.kind).min_input_length(config)
    if not pre_averaged:
        needed *= config.frame_averaging
    return needed
