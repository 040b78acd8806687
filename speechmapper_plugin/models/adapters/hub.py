"""Typed access to adapters: ``get_speech_adapter_model_hub().load_model(card)``."""

from __future__ import annotations

from fairseq2.models import ModelHubAccessor

from speechmapper_plugin.models.adapters.config import (
    SPEECH_ADAPTER_FAMILY,
    AdapterConfig,
)
from speechmapper_plugin.models.adapters.model import SpeechAdapter

get_speech_adapter_model_hub = ModelHubAccessor(
    SPEECH_ADAPTER_FAMILY, kls=SpeechAdapter, config_kls=AdapterConfig
)
