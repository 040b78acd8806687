"""Registers the ``whisper_encoder`` model family with the fairseq2 runtime.

A speech-encoder family (:func:`register_speech_encoder_family`), like
``sm4t_speech_encoder``: ``openai/whisper-large-v3``'s ``model.safetensors``
holds encoder and decoder; only the encoder's tensors are read, the decoder is
never materialised.
"""

from __future__ import annotations

from fairseq2.runtime.dependency import DependencyContainer

from speechmapper_plugin.models.speech_encoder import register_speech_encoder_family
from speechmapper_plugin.models.whisper_encoder.config import (
    WHISPER_ENCODER_FAMILY,
    WhisperEncoderConfig,
    register_whisper_encoder_configs,
)
from speechmapper_plugin.models.whisper_encoder.factory import (
    create_whisper_encoder_model,
)
from speechmapper_plugin.models.whisper_encoder.interop import (
    convert_whisper_encoder_state_dict,
    select_whisper_encoder_keys,
)
from speechmapper_plugin.models.whisper_encoder.model import WhisperEncoder


def register_whisper_encoder_family(container: DependencyContainer) -> None:
    """Register the family and its architectures."""
    register_speech_encoder_family(
        container,
        WHISPER_ENCODER_FAMILY,
        WhisperEncoder,
        WhisperEncoderConfig,
        factory=create_whisper_encoder_model,
        state_dict_converter=convert_whisper_encoder_state_dict,
        select_keys=select_whisper_encoder_keys,
    )

    register_whisper_encoder_configs(container)
