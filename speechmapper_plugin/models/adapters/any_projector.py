"""One name for "a projector or an adapter": what recipes, datasets and the
pipeline accept.

Both kinds take SFM features and a layout and return speech embeddings and a
layout; either config answers the length questions itself
(``max_output_length``, ``min_input_frames``, ``variable_length``).
"""

from __future__ import annotations

from typing import TypeAlias, TypeGuard

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


def projector_family(model: Module) -> str:
    """The model family to record in checkpoint cards."""
    if isinstance(model, SpeechAdapter):
        return SPEECH_ADAPTER_FAMILY
    return SPEECHMAPPER_FAMILY
