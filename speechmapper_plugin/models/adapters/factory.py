"""Builds an adapter from its configuration."""

from __future__ import annotations

from fairseq2.models.transformer import TransformerEncoder
from fairseq2.nn import Linear, PositionEncoder, SinusoidalPositionEncoder

from speechmapper_plugin.models.adapters.config import AdapterConfig
from speechmapper_plugin.models.adapters.kinds import adapter_kind
from speechmapper_plugin.models.adapters.model import SpeechAdapter
from speechmapper_plugin.models.transformer_layers import create_pre_ln_encoder


def create_speech_adapter_model(config: AdapterConfig) -> SpeechAdapter:
    """Pre-LayerNorm Transformer layers, as in the SpeechMapper projector; the
    length adapter is built by the kind's entry (``kinds.py``)."""

    def create_position_encoder(max_seq_len: int) -> PositionEncoder | None:
        if not config.use_position_encoding:
            return None
        return SinusoidalPositionEncoder(config.model_dim, max_seq_len)

    def create_encoder(num_layers: int) -> TransformerEncoder | None:
        if num_layers == 0:
            return None

        return create_pre_ln_encoder(
            num_layers=num_layers,
            model_dim=config.model_dim,
            num_attn_heads=config.num_attn_heads,
            ffn_inner_dim=config.ffn_inner_dim,
            dropout_p=config.dropout_p,
        )

    max_frames = max(config.max_input_frames // config.frame_averaging, 1)
    max_out = max(int(config.max_output_length(max_frames, pre_averaged=True)), 1)

    # The order of creation is the order of the seeded initialisation
    # (the length adapter last, as trained checkpoints were initialised).
    input_proj = Linear(config.input_dim, config.model_dim, bias=True)
    frame_pos = create_position_encoder(max_frames)
    pre_encoder = create_encoder(config.num_pre_layers)
    post_pos = create_position_encoder(max_out)
    post_encoder = create_encoder(config.num_post_layers)
    final_proj = Linear(config.model_dim, config.output_dim, bias=True)
    length_adapter = adapter_kind(config.kind).create(config)

    return SpeechAdapter(
        config,
        input_proj,
        frame_pos,
        pre_encoder,
        length_adapter,
        post_pos if post_encoder is not None else None,
        post_encoder,
        final_proj,
    )
