"""The speech foundation models (SFMs) the plugin extracts features with:
SeamlessM4T-v2's speech encoder and Whisper's encoder, behind one interface
for the extraction recipe, the feature store and the pipeline."""

from __future__ import annotations

from typing import Final, TypeAlias

import torch
from fairseq2.device import Device
from torch.nn import Module

from speechmapper_plugin.audio import min_num_samples, num_encoder_frames
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4T_SPEECH_ENCODER_FAMILY,
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    SpeechFeatureExtractor,
)
from speechmapper_plugin.models.whisper_encoder import (
    WHISPER_ENCODER_FAMILY,
    WhisperEncoder,
    WhisperEncoderConfig,
    WhisperSpeechFeatureExtractor,
    num_valid_positions,
    window_spans,
)
from speechmapper_plugin.models.whisper_encoder.config import WHISPER_HOP_LENGTH

SfmEncoder: TypeAlias = SM4TSpeechEncoder | WhisperEncoder

SfmEncoderConfig: TypeAlias = SM4TSpeechEncoderConfig | WhisperEncoderConfig

SfmExtractor: TypeAlias = SpeechFeatureExtractor | WhisperSpeechFeatureExtractor

SFM_CLASSES: Final = (SM4TSpeechEncoder, WhisperEncoder)

SFM_CONFIG_CLASSES: Final = (SM4TSpeechEncoderConfig, WhisperEncoderConfig)

SFM_FAMILIES = (SM4T_SPEECH_ENCODER_FAMILY, WHISPER_ENCODER_FAMILY)

FBANK_FRAMES_PER_SECOND = 100
"""SeamlessM4T's fbank hop is 10 ms."""


def create_sfm_extractor(
    model: Module,
    *,
    layer: int | None = None,
    layer_norm: bool | None = None,
    frame_averaging: int = 1,
    dtype: torch.dtype = torch.float32,
    device: Device | str | None = None,
    max_windows: int = 16,
) -> SfmExtractor:
    """The feature extractor of ``model``.

    :param max_windows: Whisper only: windows encoded at once.
    :raises ValueError: if ``model`` is no supported SFM, or on a bad setting.
    """
    if isinstance(model, WhisperEncoder):
        return WhisperSpeechFeatureExtractor(
            model,
            layer=layer,
            layer_norm=layer_norm,
            frame_averaging=frame_averaging,
            max_windows=max_windows,
            dtype=dtype,
            device=device,
        )

    if isinstance(model, SM4TSpeechEncoder):
        return SpeechFeatureExtractor(
            model,
            layer=layer,
            layer_norm=layer_norm,
            frame_averaging=frame_averaging,
            dtype=dtype,
            device=device,
        )

    raise ValueError(
        f"The speech encoder must be of family {' or '.join(f'`{f}`' for f in SFM_FAMILIES)}, but is a {type(model).__name__}."
    )


def sfm_family_and_frame_rate(extractor: SfmExtractor) -> tuple[str, float]:
    """The SFM family of ``extractor`` and its output frames per second."""
    if isinstance(extractor, WhisperSpeechFeatureExtractor):
        return WHISPER_ENCODER_FAMILY, extractor.frame_rate

    frame_rate = FBANK_FRAMES_PER_SECOND / (
        extractor.model.config.fbank_stride * extractor.frame_averaging
    )
    return SM4T_SPEECH_ENCODER_FAMILY, frame_rate


def sfm_num_frames(extractor: SfmExtractor, num_samples: int) -> int:
    """Encoder frames (before any averaging) of ``num_samples`` of 16 kHz audio."""
    if isinstance(extractor, WhisperSpeechFeatureExtractor):
        window = extractor.model.config.window_num_samples
        return sum(
            num_valid_positions(end - start)
            for start, end in window_spans(num_samples, window)
        )

    return num_encoder_frames(num_samples, extractor.model.config.fbank_stride)


def sfm_min_num_samples(extractor: SfmExtractor, num_frames: int) -> int:
    """The shortest 16 kHz audio giving at least ``num_frames`` encoder frames."""
    if isinstance(extractor, WhisperSpeechFeatureExtractor):
        config = extractor.model.config
        full, rest = divmod(num_frames, config.max_source_positions)
        if rest == 0:
            full, rest = full - 1, config.max_source_positions
        return full * config.window_num_samples + (2 * rest - 1) * WHISPER_HOP_LENGTH

    return min_num_samples(extractor.model.config.fbank_stride * num_frames)
