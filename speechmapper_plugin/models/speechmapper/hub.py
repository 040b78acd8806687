"""Typed access to SpeechMapper projectors: ``get_speechmapper_model_hub().load_model(card)``."""

from __future__ import annotations

from fairseq2.models import ModelHubAccessor

from speechmapper_plugin.models.speechmapper.config import (
    SPEECHMAPPER_FAMILY,
    SpeechMapperConfig,
)
from speechmapper_plugin.models.speechmapper.model import SpeechMapperProjector

get_speechmapper_model_hub = ModelHubAccessor(
    SPEECHMAPPER_FAMILY, kls=SpeechMapperProjector, config_kls=SpeechMapperConfig
)
