"""Configuration and architectures of the Whisper encoder."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Final

from fairseq2.runtime.config_registry import ConfigRegistrar
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.models.speech_encoder import check_speech_encoder_config

WHISPER_ENCODER_FAMILY: Final = "whisper_encoder"

WHISPER_SAMPLE_RATE: Final = 16_000

WHISPER_HOP_LENGTH: Final = 160
"""Samples per log-mel frame (10 ms)."""

POSITIONS_PER_SECOND: Final = 50
"""Encoder output rate: 100 mel frames per second, halved by the stride-2 convolution."""


@dataclass(kw_only=True)
class WhisperEncoderConfig:
    """Holds the configuration of a Whisper encoder.

    The default values are the ``large_v3`` architecture (``openai/whisper-large-v3``):
    128 mel bins, 32 pre-norm Transformer blocks of width 1280, up to and
    including the encoder's final LayerNorm. The decoder is not part of this
    model. Outputs are 50 Hz (the second convolution has stride 2), 1500
    positions per 30-second window.
    """

    model_dim: int = 1280
    """The width of the Transformer blocks."""

    num_mel_bins: int = 128
    """Log-mel channels of the input (80 before large-v3)."""

    max_source_positions: int = 1500
    """Encoder positions per window (30 s of 10 ms mel frames, halved by the
    stride-2 convolution). Every window is exactly this long."""

    num_encoder_layers: int = 32
    """The number of Transformer blocks."""

    num_encoder_attn_heads: int = 20
    """The number of attention heads of each block."""

    ffn_inner_dim: int = 5120
    """The inner width of each block's feed-forward network."""

    output_layer: int = 32
    """The block whose output the model returns, 1-based. Blocks after it are
    never run."""

    output_layer_norm: bool = True
    """If ``True``, applies the encoder's final LayerNorm to the output of
    ``output_layer``. For the last layer this is transformers'
    ``hidden_states[-1]`` (``last_hidden_state``), what Whisper's decoder reads;
    transformers' ``hidden_states[k]`` for earlier ``k`` are raw block outputs
    (``output_layer_norm: false``)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        check_speech_encoder_config(
            result, self, ("num_mel_bins", "max_source_positions")
        )

        if self.model_dim % 2 != 0:
            result.add_error(
                f"`model_dim` must be even (sinusoidal positions), but is {self.model_dim}."
            )

        if self.max_source_positions % POSITIONS_PER_SECOND != 0:
            result.add_error(
                f"`max_source_positions` must be a multiple of {POSITIONS_PER_SECOND} (whole-second windows, as Whisper's feature extractor needs), but is {self.max_source_positions}."
            )

        return result

    @property
    def num_mel_frames(self) -> int:
        """Mel frames per window (3000 for 30 s)."""
        return self.max_source_positions * 2

    @property
    def window_num_samples(self) -> int:
        """16 kHz samples per window (480000 for 30 s)."""
        return self.num_mel_frames * WHISPER_HOP_LENGTH

    @property
    def window_seconds(self) -> int:
        """The window length in seconds (30 for the released models)."""
        return self.max_source_positions // POSITIONS_PER_SECOND


RELEASED_ARCHS: Final = {
    "large_v2": (1280, 32, 20),  # whisper-large and -large-v2: large_v3 with 80 mels
    "medium": (1024, 24, 16),
    "small": (768, 12, 12),
    "base": (512, 6, 8),
    "openai_tiny": (384, 4, 6),  # OpenAI's released whisper-tiny; not the test arch
}
"""The 80-mel releases, as ``(model_dim, num_encoder_layers, num_encoder_attn_heads)``;
each has an FFN of ``4 * model_dim`` and returns its last layer."""


def _released_config(
    model_dim: int, num_encoder_layers: int, num_encoder_attn_heads: int
) -> WhisperEncoderConfig:
    """The config of an 80-mel Whisper release of these dimensions."""
    return WhisperEncoderConfig(
        model_dim=model_dim,
        num_mel_bins=80,
        num_encoder_layers=num_encoder_layers,
        num_encoder_attn_heads=num_encoder_attn_heads,
        ffn_inner_dim=4 * model_dim,
        output_layer=num_encoder_layers,
    )


def register_whisper_encoder_configs(container: DependencyContainer) -> None:
    arch = ConfigRegistrar(container, WhisperEncoderConfig)

    @arch("large_v3")
    def large_v3() -> WhisperEncoderConfig:
        """whisper-large-v3 (and -turbo's encoder): 32 blocks, 1280-d, 20 heads, 128 mels."""
        return WhisperEncoderConfig()

    for name, dims in RELEASED_ARCHS.items():
        arch(name)(partial(_released_config, *dims))

    @arch("tiny")
    def tiny() -> WhisperEncoderConfig:
        """A test model (about 70k parameters), the plugin's ``tiny`` convention:
        64-d, 2 blocks, 16 mels and 1-second windows (50 positions), so that
        chunking of long audio is exercised with seconds of speech."""
        return WhisperEncoderConfig(
            model_dim=64,
            num_mel_bins=16,
            max_source_positions=50,
            num_encoder_layers=2,
            num_encoder_attn_heads=4,
            ffn_inner_dim=128,
            output_layer=2,
        )
