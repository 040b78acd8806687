"""Typed access: ``get_sm4t_speech_encoder_hub().load_model(card)``."""

from __future__ import annotations

from fairseq2.models import ModelHubAccessor

from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4T_SPEECH_ENCODER_FAMILY,
    SM4TSpeechEncoderConfig,
)
from speechmapper_plugin.models.sm4t_speech_encoder.model import SM4TSpeechEncoder

get_sm4t_speech_encoder_hub = ModelHubAccessor(
    SM4T_SPEECH_ENCODER_FAMILY,
    kls=SM4TSpeechEncoder,
    config_kls=SM4TSpeechEncoderConfig,
)
