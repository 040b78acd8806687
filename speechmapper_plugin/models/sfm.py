"""The speech foundation models (SFMs) the plugin extracts features with:
SeamlessM4T-v2's speech encoder and Whisper's encoder, behind one interface
(:class:`~speechmapper_plugin.models.speech_encoder.SpeechEncoderFeatureExtractor`)
for the extraction recipe, the feature store and the pipeline."""

from __future__ import annotations

from typing import Final, TypeAlias

from torch.nn import Module
from typing_extensions import Unpack

from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4T_SPEECH_ENCODER_FAMILY,
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    SpeechFeatureExtractor,
)
from speechmapper_plugin.models.speech_encoder import ExtractorOptions
from speechmapper_plugin.models.whisper_encoder import (
    WHISPER_ENCODER_FAMILY,
    WhisperEncoder,
    WhisperEncoderConfig,
    WhisperSpeechFeatureExtractor,
)

SfmEncoder: TypeAlias = SM4TSpeechEncoder | WhisperEncoder

SfmExtractor: TypeAlias = SpeechFeatureExtractor | WhisperSpeechFeatureExtractor

SFM_CLASSES: Final = (SM4TSpeechEncoder, WhisperEncoder)

SFM_CONFIG_CLASSES: Final = (SM4TSpeechEncoderConfig, WhisperEncoderConfig)

SFM_FAMILIES = (SM4T_SPEECH_ENCODER_FAMILY, WHISPER_ENCODER_FAMILY)


def create_sfm_extractor(
    model: Module, *, max_windows: int = 16, **options: Unpack[ExtractorOptions]
) -> SfmExtractor:
    """The feature extractor of ``model``.

    :param max_windows: Whisper only: windows encoded at once.
    :raises ValueError: if ``model`` is no supported SFM, or on a bad setting.
    """
    if isinstance(model, WhisperEncoder):
        return WhisperSpeechFeatureExtractor(model, max_windows=max_windows, **options)

    if isinstance(model, SM4TSpeechEncoder):
        return SpeechFeatureExtractor(model, **options)

    raise ValueError(
        f"The speech encoder must be of family {' or '.join(f'`{f}`' for f in SFM_FAMILIES)}, but is a {type(model).__name__}."
    )
