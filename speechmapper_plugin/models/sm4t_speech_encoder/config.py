"""Configuration and architectures of the SeamlessM4T-v2 speech encoder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from fairseq2.runtime.config_registry import ConfigRegistrar
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.models.frames import ConvShape
from speechmapper_plugin.models.speech_encoder import check_speech_encoder_config
from speechmapper_plugin.validation import check_positive_fields

SM4T_SPEECH_ENCODER_FAMILY: Final = "sm4t_speech_encoder"

SHAW_SDPA_IMPLS: Final = ("gathered", "fairseq2")


@dataclass(kw_only=True)
class SM4TSpeechEncoderConfig:
    """Holds the configuration of a SeamlessM4T-v2 speech encoder.

    The default values are the ``large`` architecture: the speech encoder of
    SeamlessM4T-v2 large (the w2v-BERT 2.0 "conformer_shaw_600m" shape) up to and
    including the LayerNorm after its last Conformer block: the 50 Hz hidden
    states of one layer. With ``length_adaptor`` (archs ``*_adaptor``) the model
    is SeamlessM4T's whole speech encoder instead, ending after its length
    adaptor (8x down-sampling to 6.25 Hz), the features SeamlessM4T's text
    decoder reads.
    """

    model_dim: int = 1024
    """The width of the Conformer blocks."""

    num_fbank_channels: int = 80
    """The number of log-mel filterbank channels the model consumes."""

    fbank_stride: int = 2
    """The model stacks this many consecutive fbank frames into one input frame
    (10 ms -> 20 ms, i.e. 50 Hz encoder frames for stride 2)."""

    num_encoder_layers: int = 24
    """The number of Conformer blocks."""

    num_encoder_attn_heads: int = 16
    """The number of attention heads of each Conformer block."""

    ffn_inner_dim: int = 4096
    """The inner width of the two macaron feed-forward networks of each block."""

    depthwise_conv_kernel_size: int = 31
    """The kernel size of the causal depthwise convolution of each block."""

    max_lhs_rel_pos: int = 64
    """Shaw relative positions are clipped to ``[-max_lhs_rel_pos, max_rhs_rel_pos]``:
    keys further than this many frames to the left share one embedding."""

    max_rhs_rel_pos: int = 8
    """The right clipping value of the Shaw relative positions."""

    shaw_sdpa: str = "gathered"
    """How the Shaw attention is computed; both read the same weights.

    - ``"gathered"``: :class:`GatheredShawRelativePositionSDPA`, logits against
      the 73 distinct relative keys, gathered, then fused SDPA. Faster and
      leaner (no ``[S, S, head_dim]`` tensor); equal to the reference up to
      float rounding.
    - ``"fairseq2"``: fairseq2's ``ShawRelativePositionSDPA``, the same
      algorithm as transformers and Meta's original (bit-identical to
      transformers on CPU)."""

    output_layer: int = 24
    """The Conformer block whose output the model returns, 1-based (1 is the
    output of the first block). Blocks after it are never run."""

    output_layer_norm: bool = True
    """If ``True``, applies the encoder's final LayerNorm (Meta's
    ``speech_encoder.inner_layer_norm``, Hugging Face's
    ``speech_encoder.encoder.layer_norm``) to the output of ``output_layer``.

    The default is ``True`` because, for the last layer, this is what Hugging
    Face's ``hidden_states[24]`` holds and what the SeamlessM4T adaptor consumes,
    and because it keeps the feature scale stable for a downstream projector.
    Set it to ``False`` for the raw block output. Note that Hugging Face's
    ``hidden_states[k]`` for ``k < 24`` are raw block outputs."""

    length_adaptor: bool = False
    """If ``True``, the output is SeamlessM4T's speech-encoder output: the last
    block, its LayerNorm, the intermediate FFN (``x + 0.5 * ffn(x)``), the
    length adaptor layers and their LayerNorm (Hugging Face
    ``SeamlessM4Tv2SpeechEncoder(...).last_hidden_state``, Meta's
    ``UnitYEncoderAdaptor``). The adaptor reads the LayerNorm'd last layer, so
    ``output_layer`` must be ``num_encoder_layers`` and ``output_layer_norm``
    ``True``."""

    adaptor_kernel_size: int = 8
    """The kernel of the length adaptor's two pooling convolutions (padding
    ``adaptor_kernel_size // 2``)."""

    adaptor_stride: int = 8
    """The stride of those convolutions: the length adaptor's down-sampling
    factor (50 Hz -> 6.25 Hz for 8)."""

    num_adaptor_layers: int = 1
    """The number of length adaptor layers (each down-samples by ``adaptor_stride``)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        check_speech_encoder_config(
            result,
            self,
            ("num_fbank_channels", "fbank_stride", "depthwise_conv_kernel_size"),
        )

        for name in ("max_lhs_rel_pos", "max_rhs_rel_pos"):
            value = getattr(self, name)
            if value < 0:
                result.add_error(f"`{name}` must be non-negative, but is {value}.")

        if self.shaw_sdpa not in SHAW_SDPA_IMPLS:
            result.add_error(
                f"`shaw_sdpa` must be one of {', '.join(SHAW_SDPA_IMPLS)}, but is '{self.shaw_sdpa}'."
            )

        if self.length_adaptor:
            self._check_adaptor(result)

        return result

    def _check_adaptor(self, result: ValidationResult) -> None:
        check_positive_fields(
            result,
            self,
            ("adaptor_kernel_size", "adaptor_stride", "num_adaptor_layers"),
        )

        # The adaptor was trained on the LayerNorm'd last layer; any other
        # input gives features no SeamlessM4T component ever saw.
        if self.output_layer != self.num_encoder_layers:
            result.add_error(
                f"`length_adaptor` follows the last layer, so `output_layer` must be {self.num_encoder_layers} (`num_encoder_layers`), but is {self.output_layer}. For the features of an intermediate layer, set `length_adaptor: false` (e.g. arch `large` instead of `large_adaptor`)."
            )

        if not self.output_layer_norm:
            result.add_error(
                "`length_adaptor` reads the last layer after the encoder's final LayerNorm, so `output_layer_norm` must be true. For the raw last layer, set `length_adaptor: false`."
            )

    def adaptor_convs(self) -> list[ConvShape]:
        """The length adaptor's pooling convolutions in order, each as
        ``(kernel_size, stride, padding)``; empty without the adaptor."""
        if not self.length_adaptor:
            return []

        conv = (
            self.adaptor_kernel_size,
            self.adaptor_stride,
            self.adaptor_kernel_size // 2,
        )

        return [conv] * self.num_adaptor_layers

    @property
    def feature_dim(self) -> int:
        """The width of one stacked input frame."""
        return self.num_fbank_channels * self.fbank_stride


def register_sm4t_speech_encoder_configs(container: DependencyContainer) -> None:
    arch = ConfigRegistrar(container, SM4TSpeechEncoderConfig)

    @arch("large")
    def large() -> SM4TSpeechEncoderConfig:
        """SeamlessM4T-v2 large: 24 blocks, 1024-d, 16 heads, FFN 4096, kernel 31."""
        return SM4TSpeechEncoderConfig()

    @arch("tiny")
    def tiny() -> SM4TSpeechEncoderConfig:
        """About 200k parameters: tests and the CPU quickstart.

        Keeps the real kernel size and relative-position clipping so that the
        tiny model exercises the same code paths as ``large``.
        """
        return SM4TSpeechEncoderConfig(
            model_dim=64,
            num_encoder_layers=4,
            num_encoder_attn_heads=4,
            ffn_inner_dim=128,
            output_layer=4,
        )

    @arch("large_adaptor")
    def large_adaptor() -> SM4TSpeechEncoderConfig:
        """SeamlessM4T-v2 large's whole speech encoder: ``large`` plus the
        intermediate FFN and the length adaptor (6.25 Hz output)."""
        return SM4TSpeechEncoderConfig(length_adaptor=True)

    @arch("tiny_adaptor")
    def tiny_adaptor() -> SM4TSpeechEncoderConfig:
        """``tiny`` plus the length adaptor (stride 8, as ``large_adaptor``)."""
        return replace(tiny(), length_adaptor=True)
