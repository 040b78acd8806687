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

ADAPTOR_NAME_MARK: Final = "adaptor"
"""What the name of a SeamlessM4T encoder card (or checkpoint) holds when its
features come after the length adaptor (``seamless_m4t_v2_large_speech_encoder_adaptor``)."""


def check_encoder_name(model: Module, name: str) -> None:
    """Refuse an encoder name that misstates the features: a feature store or
    a projector records only the encoder's name, layer and LayerNorm, so the
    name must say whether SeamlessM4T's length adaptor (6.25 Hz instead of
    50 Hz) made them.

    :raises ValueError: if ``model`` has the adaptor but ``name`` does not say
        ``adaptor``, or ``name`` does but the model has none (e.g. after a
        ``length_adaptor`` config override).
    """
    if not isinstance(model, SM4TSpeechEncoder):
        return

    has_adaptor = model.config.length_adaptor
    if has_adaptor == (ADAPTOR_NAME_MARK in name):
        return

    if has_adaptor:
        raise ValueError(
            f"The encoder `{name}` returns features after SeamlessM4T's length adaptor, but its name does not say `{ADAPTOR_NAME_MARK}`, so the features would be recorded as another encoder's. Use the card `seamless_m4t_v2_large_speech_encoder_adaptor` (or a card of yours whose name contains `{ADAPTOR_NAME_MARK}`) instead of a `length_adaptor` override or arch."
        )

    raise ValueError(
        f"The encoder `{name}` is named as an adaptor encoder, but returns features without SeamlessM4T's length adaptor (`length_adaptor` is false). Drop the override, or use the card without `{ADAPTOR_NAME_MARK}` in its name."
    )


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
