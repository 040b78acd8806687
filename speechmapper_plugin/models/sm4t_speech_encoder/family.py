"""Registers the ``sm4t_speech_encoder`` model family with the fairseq2 runtime.

A speech-encoder family (:func:`register_speech_encoder_family`: reads only the
speech-encoder tensors of the multi-gigabyte SeamlessM4T checkpoints) with a
:class:`SpeechEncoderDownloadManager` around the global download manager, which
fetches only the safetensors shards that hold the speech encoder.
"""

from __future__ import annotations

from fairseq2.runtime.dependency import DependencyContainer

from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4T_SPEECH_ENCODER_FAMILY,
    SM4TSpeechEncoderConfig,
    register_sm4t_speech_encoder_configs,
)
from speechmapper_plugin.models.sm4t_speech_encoder.download import (
    SpeechEncoderDownloadManager,
)
from speechmapper_plugin.models.sm4t_speech_encoder.factory import (
    create_sm4t_speech_encoder_model,
)
from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    convert_sm4t_speech_encoder_state_dict,
    select_speech_encoder_keys,
)
from speechmapper_plugin.models.sm4t_speech_encoder.model import SM4TSpeechEncoder
from speechmapper_plugin.models.speech_encoder import register_speech_encoder_family


def register_sm4t_speech_encoder_family(container: DependencyContainer) -> None:
    """Register the family and its ``large`` and ``tiny`` architectures."""
    register_speech_encoder_family(
        container,
        SM4T_SPEECH_ENCODER_FAMILY,
        SM4TSpeechEncoder,
        SM4TSpeechEncoderConfig,
        factory=create_sm4t_speech_encoder_model,
        state_dict_converter=convert_sm4t_speech_encoder_state_dict,
        select_keys=select_speech_encoder_keys,
        download_manager=SpeechEncoderDownloadManager,
    )

    register_sm4t_speech_encoder_configs(container)
