"""Builds a SpeechMapper projector from its configuration."""

from __future__ import annotations

from fairseq2.nn import (
    Linear,
    PositionEncoder,
    SinusoidalPositionEncoder,
)
from torch.nn import Conv1d

from speechmapper_plugin.models.frames import conv_output_length
from speechmapper_plugin.models.speechmapper.config import (
    ProjectorBlockConfig,
    SpeechMapperConfig,
)
from speechmapper_plugin.models.speechmapper.model import (
    ProjectorBlock,
    SpeechMapperProjector,
)
from speechmapper_plugin.models.transformer_layers import create_pre_ln_encoder


def create_speechmapper_model(config: SpeechMapperConfig) -> SpeechMapperProjector:
    """Pre-LayerNorm Transformer blocks, as in most speech encoders of fairseq2."""
    blocks = []

    input_dim = config.input_dim
    # The longest sequence each block's position encoder must cover.
    max_len = config.max_input_frames // config.frame_averaging

    for block_config in config.blocks:
        max_len = conv_output_length(max_len, *block_config.conv_shape)

        blocks.append(create_block(config, block_config, input_dim, max(max_len, 1)))

        input_dim = block_config.output_dim

    final_proj = Linear(input_dim, config.output_dim, bias=True)

    return SpeechMapperProjector(config, blocks, final_proj)


def create_block(
    config: SpeechMapperConfig,
    block_config: ProjectorBlockConfig,
    input_dim: int,
    max_seq_len: int,
) -> ProjectorBlock:
    conv = Conv1d(
        input_dim,
        block_config.model_dim,
        block_config.conv_kernel_size,
        stride=block_config.conv_stride,
        padding=block_config.conv_padding,
    )

    pos_encoder: PositionEncoder | None = None
    if config.use_position_encoding:
        pos_encoder = SinusoidalPositionEncoder(block_config.model_dim, max_seq_len)

    encoder = create_pre_ln_encoder(
        num_layers=block_config.num_layers,
        model_dim=block_config.model_dim,
        num_attn_heads=block_config.num_attn_heads,
        ffn_inner_dim=block_config.ffn_inner_dim,
        dropout_p=config.dropout_p,
    )

    proj = Linear(block_config.model_dim, block_config.output_dim, bias=True)

    return ProjectorBlock(conv, pos_encoder, encoder, proj)
