"""The Transformer pieces of the projector families (``speechmapper``,
``speech_adapter``): pre-LayerNorm, non-causal, biased, as in most speech
encoders of fairseq2.

One builder for both families, so an adapter's Transformer layers are the
projector's by construction.
"""

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
    TransformerNormOrder,
    create_default_sdpa,
)
from fairseq2.nn import StandardLayerNorm


def create_attention(
    model_dim: int, num_attn_heads: int, dropout_p: float
) -> MultiheadAttention:
    """Non-causal multi-head attention: every position sees every other."""
    sdpa = create_default_sdpa(IdentityBias(), dropout_p=dropout_p)

    return StandardMultiheadAttention(model_dim, num_attn_heads, sdpa)


def create_ffn(
    model_dim: int, ffn_inner_dim: int, dropout_p: float
) -> FeedForwardNetwork:
    return StandardFeedForwardNetwork(
        model_dim, ffn_inner_dim, bias=True, inner_dropout_p=dropout_p
    )


def create_pre_ln_encoder(
    *,
    num_layers: int,
    model_dim: int,
    num_attn_heads: int,
    ffn_inner_dim: int,
    dropout_p: float,
) -> TransformerEncoder:
    """``num_layers`` pre-LayerNorm layers and the final LayerNorm that a
    pre-LN stack needs."""
    layers = [
        StandardTransformerEncoderLayer(
            create_attention(model_dim, num_attn_heads, dropout_p),
            StandardLayerNorm(model_dim, bias=True),
            create_ffn(model_dim, ffn_inner_dim, dropout_p),
            StandardLayerNorm(model_dim, bias=True),
            norm_order=TransformerNormOrder.PRE,
            dropout_p=dropout_p,
        )
        for _ in range(num_layers)
    ]

    return StandardTransformerEncoder(layers, StandardLayerNorm(model_dim, bias=True))
