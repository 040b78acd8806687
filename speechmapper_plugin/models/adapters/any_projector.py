"""One name for "a projector or an adapter": what recipes, datasets and the
pipeline accept.

Both kinds take SFM features and a layout and return speech embeddings and a
layout; these helpers answer the length questions for either config.
"""

from __future__ import annotations

from typing import TypeAlias, TypeGuard, TypeVar

from torch import Tensor
from torch.nn import Module

from speechmapper_plugin.models.adapters.config import (
    SPEECH_ADAPTER_FAMILY,
    AdapterConfig,
)
from speechmapper_plugin.models.adapters.model import SpeechAdapter
from speechmapper_plugin.models.speechmapper import (
    SPEECHMAPPER_FAMILY,
    SpeechMapperConfig,
    SpeechMapperProjector,
)

ProjectorConfig: TypeAlias = SpeechMapperConfig | AdapterConfig

AnyProjector: TypeAlias = SpeechMapperProjector | SpeechAdapter

PROJECTOR_CLASSES: tuple[type[Module], ...] = (SpeechMapperProjector, SpeechAdapter)

PROJECTOR_CONFIG_CLASSES = (SpeechMapperConfig, AdapterConfig)
"""The configurations of :data:`PROJECTOR_CLASSES` (for ``isinstance`` checks)."""


def is_projector(model: object) -> TypeGuard[AnyProjector]:
    """Whether ``model`` is a SpeechMapper projector or an adapter."""
    return isinstance(model, PROJECTOR_CLASSES)


LengthT = TypeVar("LengthT", int, Tensor)


def max_output_length(
    config: ProjectorConfig, input_length: LengthT, *, pre_averaged: bool = False
) -> LengthT:
    """Exact output length, or an upper bound for variable-length adapters."""
    return config.max_output_length(input_length, pre_averaged=pre_averaged)


def min_input_frames(config: ProjectorConfig, *, pre_averaged: bool = False) -> int:
    """The shortest input (in frames) that yields at least one output."""
    return config.min_input_frames(pre_averaged=pre_averaged)


def is_variable_length(config: ProjectorConfig) -> bool:
    return config.variable_length


def projector_family(model: Module) -> str:
    """The model family to record in checkpoint cards."""
    if isinstance(model, SpeechAdapter):
        return SPEECH_ADAPTER_FAMILY
    return SPEECHMAPPER_FAMILY
