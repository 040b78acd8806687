"""Builds the Whisper encoder from fairseq2's Transformer parts.

Whisper's encoder blocks are fairseq2's pre-norm ``StandardTransformerEncoderLayer``
(LayerNorm, self-attention, residual; LayerNorm, GELU FFN, residual) with a
final LayerNorm; its fixed positions are fairseq2's ``SinusoidalPositionEncoder``
(the same table as Whisper's ``sinusoids``: sines then cosines, timescales
``10000 ** (-i / (dim/2 - 1))``). Only the convolutional stem is Whisper's own
(:class:`WhisperFrontend`). Whisper's key projection has no bias; fairseq2's
has one, which the checkpoint converter sets to zero.
"""

from __future__ import annotations

from fairseq2.models.transformer import (
    IdentityBias,
    StandardFeedForwardNetwork,
    StandardMultiheadAttention,
    StandardTransformerEncoder,
    StandardTransformerEncoderLayer,
    TransformerEncoderLayer,
    TransformerNormOrder,
    create_default_sdpa,
)
from fairseq2.nn import SinusoidalPositionEncoder, StandardLayerNorm
from torch.nn import GELU, Conv1d

from speechmapper_plugin.models.whisper_encoder.config import WhisperEncoderConfig
from speechmapper_plugin.models.whisper_encoder.model import (
    WhisperEncoder,
    WhisperFrontend,
)

LAYER_NORM_EPS = 1e-5
"""``torch.nn.LayerNorm``'s default, which Whisper uses."""


def create_whisper_encoder_model(config: WhisperEncoderConfig) -> WhisperEncoder:
    return WhisperEncoderFactory(config).create_model()


class WhisperEncoderFactory:
    def __init__(self, config: WhisperEncoderConfig) -> None:
        self._config = config

    def create_model(self) -> WhisperEncoder:
        config = self._config

        layers = [self.create_layer() for _ in range(config.num_encoder_layers)]

        encoder = StandardTransformerEncoder(layers, self.create_layer_norm())

        return WhisperEncoder(config, self.create_frontend(), encoder)

    def create_frontend(self) -> WhisperFrontend:
        config = self._config

        conv1 = Conv1d(config.num_mel_bins, config.model_dim, kernel_size=3, padding=1)
        conv2 = Conv1d(
            config.model_dim, config.model_dim, kernel_size=3, stride=2, padding=1
        )

        pos_encoder = SinusoidalPositionEncoder(
            config.model_dim, config.max_source_positions
        )

        return WhisperFrontend(conv1, conv2, pos_encoder)

    def create_layer(self) -> TransformerEncoderLayer:
        config = self._config

        self_attn = StandardMultiheadAttention(
            config.model_dim,
            config.num_encoder_attn_heads,
            create_default_sdpa(IdentityBias()),
            bias=True,
        )

        ffn = StandardFeedForwardNetwork(
            config.model_dim,
            config.ffn_inner_dim,
            bias=True,
            inner_activation=GELU(),
        )

        return StandardTransformerEncoderLayer(
            self_attn,
            self.create_layer_norm(),
            ffn,
            self.create_layer_norm(),
            norm_order=TransformerNormOrder.PRE,
        )

    def create_layer_norm(self) -> StandardLayerNorm:
        return StandardLayerNorm(self._config.model_dim, bias=True, eps=LAYER_NORM_EPS)
