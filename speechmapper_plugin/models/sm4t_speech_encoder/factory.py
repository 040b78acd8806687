"""Builds the SeamlessM4T-v2 speech encoder from fairseq2's wav2vec2/Conformer parts.

fairseq2 0.8.1 has the w2v-BERT 600m encoder (SeamlessM4T v1). SeamlessM4T v2
differs in exactly two places, both overridden below:

- self-attention uses Shaw relative position keys (clipped to -64/+8, no
  relative values) instead of Transformer-XL relative positions;
- the Conformer convolution is causal and normalised with a LayerNorm instead of
  a BatchNorm.

The Shaw attention is computed either by fairseq2's ``ShawRelativePositionSDPA``
or by :class:`GatheredShawRelativePositionSDPA` (same weights, faster; see
``sdpa.py`` and ``SM4TSpeechEncoderConfig.shaw_sdpa``).

The factory hooks are internal to fairseq2, hence the ``fairseq2==0.8.1`` pin.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fairseq2.models.conformer import ConformerConvolution
from fairseq2.models.transformer import (
    SDPA,
    IdentityBias,
    MultiheadAttention,
    RelativePositionalEncoding,
    ShawRelativePositionSDPA,
    StandardFeedForwardNetwork,
    StandardMultiheadAttention,
    TransformerNormOrder,
)
from fairseq2.models.wav2vec2 import Wav2Vec2EncoderConfig, Wav2Vec2EncoderFactory
from fairseq2.nn import StandardLayerNorm, init_bert_projection
from fairseq2.runtime.lazy import Lazy

from speechmapper_plugin.models.sm4t_speech_encoder.adaptor import (
    LengthAdaptor,
    LengthAdaptorLayer,
)
from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SHAW_SDPA_IMPLS,
    SM4TSpeechEncoderConfig,
)
from speechmapper_plugin.models.sm4t_speech_encoder.model import SM4TSpeechEncoder
from speechmapper_plugin.models.sm4t_speech_encoder.sdpa import (
    GatheredShawRelativePositionSDPA,
)


def create_sm4t_speech_encoder_model(
    config: SM4TSpeechEncoderConfig,
) -> SM4TSpeechEncoder:
    return SM4TSpeechEncoderFactory(config).create_model()


def to_wav2vec2_encoder_config(
    config: SM4TSpeechEncoderConfig,
) -> Wav2Vec2EncoderConfig:
    """The w2v-BERT 600m encoder config with our dimensions, for inference.

    Dropout and LayerDrop are off: the encoder is a frozen feature extractor.
    """
    return Wav2Vec2EncoderConfig(
        model_dim=config.model_dim,
        feature_dim=config.feature_dim,
        use_fbank=True,
        num_fbank_channels=config.num_fbank_channels,
        fbank_stride=config.fbank_stride,
        sample_fbank_every_k=1,
        first_pass_dropout_p=0.0,
        layer_norm_features=False,
        feature_extractor_layer_descs=[],
        # Anything but "conv" disables the convolutional position encoder; the
        # relative positions live in the attention (see ConformerShawEncoderFactory).
        pos_encoder_type="shaw_relative",
        pos_encoder_depth=0,
        pos_conv_kernel_size=0,
        num_pos_conv_groups=0,
        use_conformer=True,
        num_encoder_layers=config.num_encoder_layers,
        num_encoder_attn_heads=config.num_encoder_attn_heads,
        ffn_inner_dim=config.ffn_inner_dim,
        dropout_p=0.0,
        attn_dropout_p=0.0,
        ffn_inner_dropout_p=0.0,
        layer_drop_p=0.0,
        norm_order=TransformerNormOrder.POST,
        depthwise_conv_kernel_size=config.depthwise_conv_kernel_size,
    )


class ConformerShawEncoderFactory(Wav2Vec2EncoderFactory):
    """A Conformer encoder with Shaw attention and a causal LayerNorm convolution."""

    def __init__(
        self,
        config: Wav2Vec2EncoderConfig,
        *,
        max_lhs_rel_pos: int,
        max_rhs_rel_pos: int,
        shaw_sdpa: str = "gathered",
    ) -> None:
        super().__init__(config)

        if shaw_sdpa not in SHAW_SDPA_IMPLS:
            raise ValueError(
                f"`shaw_sdpa` must be one of {', '.join(SHAW_SDPA_IMPLS)}, but is '{shaw_sdpa}'."
            )

        self._max_lhs_rel_pos = max_lhs_rel_pos
        self._max_rhs_rel_pos = max_rhs_rel_pos
        self._shaw_sdpa = shaw_sdpa

    def create_self_attention(
        self, lazy_rel_pos_encoding: Lazy[RelativePositionalEncoding]
    ) -> MultiheadAttention:
        config = self._config

        # Both take the same arguments and read the same weights (no relative
        # position values: SeamlessM4T-v2 has none).
        sdpa_kls: Callable[..., SDPA] = (
            GatheredShawRelativePositionSDPA
            if self._shaw_sdpa == "gathered"
            else partial(ShawRelativePositionSDPA, use_rel_pos_values=False)
        )

        sdpa = sdpa_kls(
            config.model_dim,
            config.num_encoder_attn_heads,
            IdentityBias(),
            self._max_lhs_rel_pos,
            max_rhs_rel_pos=self._max_rhs_rel_pos,
        )

        return StandardMultiheadAttention(
            config.model_dim,
            config.num_encoder_attn_heads,
            sdpa,
            qkv_proj_init_fn=init_bert_projection,
            output_proj_init_fn=init_bert_projection,
        )

    def create_conformer_conv(self) -> ConformerConvolution:
        config = self._config

        return ConformerConvolution(
            config.model_dim,
            config.depthwise_conv_kernel_size,
            causal_depthwise_conv=True,
            norm_type="layer_norm",
        )


class SM4TSpeechEncoderFactory:
    def __init__(self, config: SM4TSpeechEncoderConfig) -> None:
        self._config = config

    def create_model(self) -> SM4TSpeechEncoder:
        config = self._config

        factory = ConformerShawEncoderFactory(
            to_wav2vec2_encoder_config(config),
            max_lhs_rel_pos=config.max_lhs_rel_pos,
            max_rhs_rel_pos=config.max_rhs_rel_pos,
            shaw_sdpa=config.shaw_sdpa,
        )

        encoder_frontend = factory.create_encoder_frontend()

        # The Conformer stack has no final LayerNorm in fairseq2 (post-norm
        # blocks); SeamlessM4T's `inner_layer_norm` is kept on the model.
        encoder = factory.create_encoder()

        inner_layer_norm = StandardLayerNorm(config.model_dim, bias=True)

        length_adaptor = self.create_length_adaptor() if config.length_adaptor else None

        return SM4TSpeechEncoder(
            config, encoder_frontend, encoder, inner_layer_norm, length_adaptor
        )

    def create_length_adaptor(self) -> LengthAdaptor:
        """The intermediate FFN (ReLU, ``ffn_inner_dim`` wide as transformers;
        Meta's ``4 * model_dim`` is the same for ``large``), the adaptor layers
        (heads and FFN width of the Conformer blocks) and their LayerNorm."""
        config = self._config

        layers = [
            LengthAdaptorLayer(
                config.model_dim,
                config.num_encoder_attn_heads,
                config.ffn_inner_dim,
                config.adaptor_kernel_size,
                config.adaptor_stride,
            )
            for _ in range(config.num_adaptor_layers)
        ]

        return LengthAdaptor(
            StandardFeedForwardNetwork(
                config.model_dim, config.ffn_inner_dim, bias=True
            ),
            layers,
            StandardLayerNorm(config.model_dim, bias=True),
        )
