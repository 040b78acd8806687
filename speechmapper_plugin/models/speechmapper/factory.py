"""Builds a SpeechMapper projector from its configuration."""

from __future__ import annotations

from fairseq2.models.transformer import (
    FeedForwardNetwork,
    IdentityBias,
    MultiheadAttention,
    StandardFeedForwardNetwork,
    StandardMultiheadAttention,
    StandardTransformerEncoder,
    StandardTransformerEncoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerNormOrder,
    create_default_sdpa,
)
from fairseq2.nn import (
    Linear,
    PositionEncoder,
    SinusoidalPositionEncoder,
    StandardLayerNorm,
)
from torch.nn import Conv1d

from speechmapper_plugin.models.speechmapper.config import (
    ProjectorBlockConfig,
    SpeechMapperConfig,
)
from speechmapper_plugin.models.speechmapper.lengths import conv_output_length
from speechmapper_plugin.models.speechmapper.model import (
    ProjectorBlock,
    SpeechMapperProjector,
)


def create_speechmapper_model(config: SpeechMapperConfig) -> SpeechMapperProjector:
    return SpeechMapperFactory(config).create_model()


class SpeechMapperFactory:
    """Pre-LayerNorm Transformer blocks, as in most speech encoders of fairseq2."""

    def __init__(self, config: SpeechMapperConfig) -> None:
        self._config = config

    def create_model(self) -> SpeechMapperProjector:
        config = self._config

        blocks = []

        input_dim = config.input_dim
        # The longest sequence each block's position encoder must cover.
        max_len = config.max_input_frames // config.frame_averaging

        for block_config in config.blocks:
            max_len = conv_output_length(
                max_len,
                block_config.conv_kernel_size,
                block_config.conv_stride,
                block_config.conv_padding,
            )

            blocks.append(self.create_block(block_config, input_dim, max(max_len, 1)))

            input_dim = block_config.output_dim

        final_proj = Linear(input_dim, config.output_dim, bias=True)

        return SpeechMapperProjector(config, blocks, final_proj)

    def create_block(
        self, block_config: ProjectorBlockConfig, input_dim: int, max_seq_len: int
    ) -> ProjectorBlock:
        conv = Conv1d(
            input_dim,
            block_config.model_dim,
            block_config.conv_kernel_size,
            stride=block_config.conv_stride,
            padding=block_config.conv_padding,
        )

        pos_encoder: PositionEncoder | None
        if self._config.use_position_encoding:
            pos_encoder = SinusoidalPositionEncoder(block_config.model_dim, max_seq_len)
        else:
            pos_encoder = None

        encoder = self.create_encoder(block_config)

        proj = Linear(block_config.model_dim, block_config.output_dim, bias=True)

        return ProjectorBlock(conv, pos_encoder, encoder, proj)

    def create_encoder(self, block_config: ProjectorBlockConfig) -> TransformerEncoder:
        layers = [
            self.create_encoder_layer(block_config)
            for _ in range(block_config.num_layers)
        ]

        # Pre-LN stacks need a final LayerNorm.
        layer_norm = StandardLayerNorm(block_config.model_dim, bias=True)

        return StandardTransformerEncoder(layers, layer_norm)

    def create_encoder_layer(
        self, block_config: ProjectorBlockConfig
    ) -> TransformerEncoderLayer:
        dim = block_config.model_dim

        return StandardTransformerEncoderLayer(
            self.create_self_attention(block_config),
            StandardLayerNorm(dim, bias=True),
            self.create_ffn(block_config),
            StandardLayerNorm(dim, bias=True),
            norm_order=TransformerNormOrder.PRE,
            dropout_p=self._config.dropout_p,
        )

    def create_self_attention(
        self, block_config: ProjectorBlockConfig
    ) -> MultiheadAttention:
        sdpa = create_default_sdpa(IdentityBias(), dropout_p=self._config.dropout_p)

        return StandardMultiheadAttention(
            block_config.model_dim, block_config.num_attn_heads, sdpa
        )

    def create_ffn(self, block_config: ProjectorBlockConfig) -> FeedForwardNetwork:
        return StandardFeedForwardNetwork(
            block_config.model_dim,
            block_config.ffn_inner_dim,
            bias=True,
            inner_dropout_p=self._config.dropout_p,
        )
