"""One entry per adapter kind: everything that depends on ``AdapterConfig.kind``.

An entry builds the kind's length adapter, gives its output length and the
shortest input that yields one output, says whether the length depends on the
speech, and holds the architecture sizes in which the kinds differ. The config
checks, the factory, the length functions and the registered archs look the
kind up here; adding a kind is adding one entry.

Lengths here count frames after ``frame_averaging`` (``AdapterConfig`` adds
the averaging: ``max_output_length``, ``min_input_frames``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Final, Literal, TypeVar

import torch
from fairseq2.models.transformer import (
    StandardTransformerDecoder,
    StandardTransformerDecoderLayer,
    TransformerDecoder,
    TransformerNormOrder,
)
from fairseq2.nn import StandardLayerNorm
from torch import Tensor
from torch.nn import Conv1d, Module

from speechmapper_plugin.models.adapters.cif import CIFLengthAdapter
from speechmapper_plugin.models.adapters.conv import ConvLengthAdapter
from speechmapper_plugin.models.adapters.ctc import CTCCompressionLengthAdapter
from speechmapper_plugin.models.adapters.qformer import WindowQFormer
from speechmapper_plugin.models.frames import (
    ConvShape,
    conv_stack_min_input_length,
    conv_stack_output_length,
)
from speechmapper_plugin.models.transformer_layers import create_attention, create_ffn

if TYPE_CHECKING:
    from speechmapper_plugin.models.adapters.config import AdapterConfig

LengthT = TypeVar("LengthT", int, Tensor)

AdapterKind = Literal["base", "conv", "wlq_former", "qformer", "cif", "ctc_compression"]
"""The names of :data:`ADAPTER_KIND_REGISTRY` for type checkers (a test keeps
the two equal)."""


class LengthAdapterKind:
    """A length adapter that keeps the frame rate (``base``: none at all).

    Subclasses override what differs: the module, the length rule, the
    shortest input.
    """

    variable_length: ClassVar[bool] = False
    """The number of outputs depends on what is said (then :meth:`output_length`
    is an upper bound and the forward pass reports the real lengths)."""

    paper_overrides: ClassVar[Mapping[str, int]] = {}
    """The kind's sizes in its paper arch, over the ones all kinds share."""

    tiny_overrides: ClassVar[Mapping[str, int]] = {}
    """The kind's sizes in its ``_tiny`` arch, over the ones all kinds share."""

    def create(self, config: AdapterConfig) -> Module | None:
        """The length adapter (``None``: the frames pass through)."""
        return None

    def output_length(self, config: AdapterConfig, length: LengthT) -> LengthT:
        """Outputs for ``length`` averaged frames (0 = too short); an upper
        bound if :attr:`variable_length`."""
        return length

    def min_input_length(self, config: AdapterConfig) -> int:
        """The fewest averaged frames that yield one output."""
        return 1

    def check_llm_vocabulary(
        self, config: AdapterConfig, vocab_size: int, llm_name: str
    ) -> None:
        """Raise if the adapter predicts tokens of a vocabulary other than the
        target LLM's (``vocab_size`` tokens); most kinds predict none."""


class ConvKind(LengthAdapterKind):
    """``num_conv_layers`` strided Conv1d + GELU."""

    @staticmethod
    def convs(config: AdapterConfig) -> list[ConvShape]:
        shape = (config.conv_kernel_size, config.conv_stride, config.conv_padding)
        return [shape] * config.num_conv_layers

    def create(self, config: AdapterConfig) -> Module | None:
        return ConvLengthAdapter(
            [
                Conv1d(
                    config.model_dim,
                    config.model_dim,
                    kernel_size,
                    stride=stride,
                    padding=padding,
                )
                for kernel_size, stride, padding in self.convs(config)
            ]
        )

    def output_length(self, config: AdapterConfig, length: LengthT) -> LengthT:
        return conv_stack_output_length(length, self.convs(config))

    def min_input_length(self, config: AdapterConfig) -> int:
        return conv_stack_min_input_length(self.convs(config))


class QFormerKind(LengthAdapterKind):
    """Learned queries per utterance."""

    # 64 queries: about 2.5 s of speech at 25 text tokens per second is far
    # more than the sentences of the paper's test sets need.
    paper_overrides = {"num_post_layers": 0, "num_queries": 64}
    tiny_overrides = {"num_queries": 32}

    windowed: ClassVar[bool] = False

    def create(self, config: AdapterConfig) -> Module | None:
        window = config.window_size if self.windowed else None
        return WindowQFormer(
            self.create_decoder(config), config.num_queries, config.model_dim, window
        )

    @staticmethod
    def create_decoder(config: AdapterConfig) -> TransformerDecoder:
        """Pre-LN layers: self-attention over the queries, cross-attention to
        the frames, feed-forward."""
        dim = config.model_dim

        layers = [
            StandardTransformerDecoderLayer(
                create_attention(dim, config.num_attn_heads, config.dropout_p),
                StandardLayerNorm(dim, bias=True),
                create_attention(dim, config.num_attn_heads, config.dropout_p),
                StandardLayerNorm(dim, bias=True),
                create_ffn(dim, config.ffn_inner_dim, config.dropout_p),
                StandardLayerNorm(dim, bias=True),
                norm_order=TransformerNormOrder.PRE,
                dropout_p=config.dropout_p,
            )
            for _ in range(config.num_qformer_layers)
        ]

        return StandardTransformerDecoder(layers, StandardLayerNorm(dim, bias=True))

    def output_length(self, config: AdapterConfig, length: LengthT) -> LengthT:
        if self.windowed:
            size = config.window_size
            return (length + size - 1) // size * config.num_queries
        if isinstance(length, Tensor):
            return torch.where(length > 0, config.num_queries, 0)
        return config.num_queries if length > 0 else 0


class WindowQFormerKind(QFormerKind):
    """Learned queries per window of ``window_size`` frames."""

    paper_overrides = {"num_post_layers": 0, "num_qformer_layers": 2}
    tiny_overrides = {"num_queries": 2}

    windowed = True


class CIFKind(LengthAdapterKind):
    """Continuous integrate-and-fire: at most one output per frame."""

    variable_length = True

    def create(self, config: AdapterConfig) -> Module | None:
        return CIFLengthAdapter(
            config.model_dim,
            config.cif_kernel_size,
            threshold=config.cif_threshold,
            tail_threshold=config.cif_tail_threshold,
        )


class CTCCompressionKind(LengthAdapterKind):
    """A CTC head; runs of one prediction merged: at most one output per frame."""

    variable_length = True

    def create(self, config: AdapterConfig) -> Module | None:
        return CTCCompressionLengthAdapter(
            config.model_dim, config.ctc_vocab_size, merge=config.ctc_merge
        )

    def check_llm_vocabulary(
        self, config: AdapterConfig, vocab_size: int, llm_name: str
    ) -> None:
        """The CTC head predicts the target LLM's tokens."""
        if config.ctc_vocab_size != vocab_size:
            raise ValueError(
                f"The `ctc_compression` adapter predicts {config.ctc_vocab_size} CTC tokens, but the vocabulary of {llm_name} has {vocab_size}; set `model.config_overrides.ctc_vocab_size: {vocab_size}`."
            )


ADAPTER_KIND_REGISTRY: Final[Mapping[AdapterKind, LengthAdapterKind]] = {
    "base": LengthAdapterKind(),
    "conv": ConvKind(),
    "wlq_former": WindowQFormerKind(),
    "qformer": QFormerKind(),
    "cif": CIFKind(),
    "ctc_compression": CTCCompressionKind(),
}
"""Every adapter kind, in the order of the paper's table."""

ADAPTER_KINDS: Final[tuple[AdapterKind, ...]] = tuple(ADAPTER_KIND_REGISTRY)

VARIABLE_LENGTH_KINDS: Final[tuple[AdapterKind, ...]] = tuple(
    name for name, kind in ADAPTER_KIND_REGISTRY.items() if kind.variable_length
)


def adapter_kind(name: str) -> LengthAdapterKind:
    """The entry of kind ``name``.

    :raises ValueError: if no kind has that name.
    """
    try:
        return ADAPTER_KIND_REGISTRY[name]  # type: ignore[index]
    except KeyError:
        raise ValueError(
            f"`kind` must be one of {', '.join(ADAPTER_KINDS)}, but is '{name}'."
        ) from None
