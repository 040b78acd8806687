"""Typed access: ``get_whisper_encoder_hub().load_model(card)``."""

from __future__ import annotations

from fairseq2.models import ModelHubAccessor

from speechmapper_plugin.models.whisper_encoder.config import (
    WHISPER_ENCODER_FAMILY,
    WhisperEncoderConfig,
)
from speechmapper_plugin.models.whisper_encoder.model import WhisperEncoder

get_whisper_encoder_hub = ModelHubAccessor(
    WHISPER_ENCODER_FAMILY,
    kls=WhisperEncoder,
    config_kls=WhisperEncoderConfig,
)
