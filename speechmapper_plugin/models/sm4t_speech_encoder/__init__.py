"""The SeamlessM4T-v2 speech encoder model family (``sm4t_speech_encoder``)."""

from __future__ import annotations

from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4T_SPEECH_ENCODER_FAMILY as SM4T_SPEECH_ENCODER_FAMILY,
)
from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4TSpeechEncoderConfig as SM4TSpeechEncoderConfig,
)
from speechmapper_plugin.models.sm4t_speech_encoder.extractor import (
    SpeechFeatureExtractor as SpeechFeatureExtractor,
)
from speechmapper_plugin.models.sm4t_speech_encoder.factory import (
    create_sm4t_speech_encoder_model as create_sm4t_speech_encoder_model,
)
from speechmapper_plugin.models.sm4t_speech_encoder.family import (
    register_sm4t_speech_encoder_family as register_sm4t_speech_encoder_family,
)
from speechmapper_plugin.models.sm4t_speech_encoder.hub import (
    get_sm4t_speech_encoder_hub as get_sm4t_speech_encoder_hub,
)
from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    FAIRSEQ1_FORMAT as FAIRSEQ1_FORMAT,
)
from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    convert_sm4t_speech_encoder_state_dict as convert_sm4t_speech_encoder_state_dict,
)
from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    detect_checkpoint_format as detect_checkpoint_format,
)
from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    select_speech_encoder_keys as select_speech_encoder_keys,
)
from speechmapper_plugin.models.sm4t_speech_encoder.model import (
    SM4TSpeechEncoder as SM4TSpeechEncoder,
)
from speechmapper_plugin.models.sm4t_speech_encoder.sdpa import (
    GatheredShawRelativePositionSDPA as GatheredShawRelativePositionSDPA,
)
