"""The Whisper encoder model family (``whisper_encoder``)."""

from __future__ import annotations

from speechmapper_plugin.models.whisper_encoder.config import (
    WHISPER_ENCODER_FAMILY as WHISPER_ENCODER_FAMILY,
)
from speechmapper_plugin.models.whisper_encoder.config import (
    WhisperEncoderConfig as WhisperEncoderConfig,
)
from speechmapper_plugin.models.whisper_encoder.extractor import (
    WhisperSpeechFeatureExtractor as WhisperSpeechFeatureExtractor,
)
from speechmapper_plugin.models.whisper_encoder.extractor import (
    num_valid_positions as num_valid_positions,
)
from speechmapper_plugin.models.whisper_encoder.family import (
    register_whisper_encoder_family as register_whisper_encoder_family,
)
from speechmapper_plugin.models.whisper_encoder.hub import (
    get_whisper_encoder_hub as get_whisper_encoder_hub,
)
from speechmapper_plugin.models.whisper_encoder.interop import (
    convert_whisper_encoder_state_dict as convert_whisper_encoder_state_dict,
)
from speechmapper_plugin.models.whisper_encoder.interop import (
    select_whisper_encoder_keys as select_whisper_encoder_keys,
)
from speechmapper_plugin.models.whisper_encoder.model import (
    WhisperEncoder as WhisperEncoder,
)
