"""Builds an adapter from its configuration."""

from __future__ import annotations

from fairseq2.models.transformer import (
    FeedForwardNetwork,
    MultiheadAttention,
    StandardTransformerDecoder,
    StandardTransformerDecoderLayer,
    TransformerDecoder,
    TransformerEncoder,
    TransformerNormOrder,
)
from fairseq2.nn import (
    Linear,
    PositionEncoder,
    SinusoidalPositionEncoder,
    StandardLayerNorm,
)
from torch.nn import Conv1d, Module

from speechmapper_plugin.models.adapters.cif import CIFLengthAdapter
from speechmapper_plugin.models.adapters.config import AdapterConfig
from speechmapper_plugin.models.adapters.ctc import CTCCompressionLengthAdapter
from speechmapper_plugin.models.adapters.lengths import max_output_length
from speechmapper_plugin.models.adapters.model import ConvLengthAdapter, SpeechAdapter
from speechmapper_plugin.models.adapters.qformer import WindowQFormer
from speechmapper_plugin.models.transformer_layers import (
    create_attention,
    create_ffn,
    create_pre_ln_encoder,
)


def create_speech_adapter_model(config: AdapterConfig) -> SpeechAdapter:
    return SpeechAdapterFactory(config).create_model()


class SpeechAdapterFactory:
    """Pre-LayerNorm Transformer layers, as in the SpeechMapper projector."""

    def __init__(self, config: AdapterConfig) -> None:
        self._config = config

    def create_model(self) -> SpeechAdapter:
        config = self._config

        max_frames = max(config.max_input_frames // config.frame_averaging, 1)
        max_out = max(int(max_output_length(config, max_frames, pre_averaged=True)), 1)

        input_proj = Linear(config.input_dim, config.model_dim, bias=True)

        frame_pos = self.create_position_encoder(max_frames)

        pre_encoder = self.create_encoder(config.num_pre_layers)

        post_pos = self.create_position_encoder(max_out)

        post_encoder = self.create_encoder(config.num_post_layers)

        final_proj = Linear(config.model_dim, config.output_dim, bias=True)

        return SpeechAdapter(
            config,
            input_proj,
            frame_pos,
            pre_encoder,
            self.create_length_adapter(),
            post_pos if post_encoder is not None else None,
            post_encoder,
            final_proj,
        )

    def create_position_encoder(self, max_seq_len: int) -> PositionEncoder | None:
        if not self._config.use_position_encoding:
            return None
        return SinusoidalPositionEncoder(self._config.model_dim, max_seq_len)

    def create_length_adapter(self) -> Module | None:
        config = self._config
        dim = config.model_dim

        if config.kind == "base":
            return None

        if config.kind == "conv":
            convs = [
                Conv1d(
                    dim,
                    dim,
                    config.conv_kernel_size,
                    stride=config.conv_stride,
                    padding=config.conv_padding,
                )
                for _ in range(config.num_conv_layers)
            ]
            return ConvLengthAdapter(convs)

        if config.kind in ("wlq_former", "qformer"):
            window = config.window_size if config.kind == "wlq_former" else None
            return WindowQFormer(
                self.create_qformer_decoder(), config.num_queries, dim, window
            )

        if config.kind == "cif":
            return CIFLengthAdapter(
                dim,
                config.cif_kernel_size,
                threshold=config.cif_threshold,
                tail_threshold=config.cif_tail_threshold,
            )

        if config.kind == "ctc_compression":
            return CTCCompressionLengthAdapter(dim, config.ctc_vocab_size)

        raise ValueError(f"Unknown adapter kind '{config.kind}'.")

    def create_encoder(self, num_layers: int) -> TransformerEncoder | None:
        if num_layers == 0:
            return None

        config = self._config

        return create_pre_ln_encoder(
            num_layers=num_layers,
            model_dim=config.model_dim,
            num_attn_heads=config.num_attn_heads,
            ffn_inner_dim=config.ffn_inner_dim,
            dropout_p=config.dropout_p,
        )

    def create_qformer_decoder(self) -> TransformerDecoder:
        dim = self._config.model_dim

        layers = [
            StandardTransformerDecoderLayer(
                self.create_attention(),
                StandardLayerNorm(dim, bias=True),
                self.create_attention(),
                StandardLayerNorm(dim, bias=True),
                self.create_ffn(),
                StandardLayerNorm(dim, bias=True),
                norm_order=TransformerNormOrder.PRE,
                dropout_p=self._config.dropout_p,
            )
            for _ in range(self._config.num_qformer_layers)
        ]

        return StandardTransformerDecoder(layers, StandardLayerNorm(dim, bias=True))

    def create_attention(self) -> MultiheadAttention:
        config = self._config
        return create_attention(
            config.model_dim, config.num_attn_heads, config.dropout_p
        )

    def create_ffn(self) -> FeedForwardNetwork:
        config = self._config
        return create_ffn(config.model_dim, config.ffn_inner_dim, config.dropout_p)
