"""SeamlessM4T's length adaptor: what follows the Conformer in its speech encoder.

fairseq2 0.8.1 has no UnitY model, so the adaptor is written here from
fairseq2's parts (LayerNorm, multi-head attention, feed-forward network) after
the published structure (Meta's ``UnitYEncoderAdaptor`` and
``UnitYTransformerAdaptorLayer``; transformers' ``SeamlessM4Tv2SpeechEncoder``
and ``SeamlessM4Tv2ConformerAdapterLayer``):

- an intermediate FFN with a half-weighted residual, ``x + 0.5 * ffn(x)``;
- per adaptor layer: the residual and the attention input are each
  LayerNorm'd, pooled by a strided convolution and gated by a GLU; the pooled
  input attends to itself; then a pre-LayerNorm FFN with its residual;
- a final LayerNorm.

One deliberate difference: before each pooling convolution the positions
past a row's length are zeroed, so a row's features do not depend on the
batch it is in. transformers and Meta pool the padded batch as it is, so the
last pooled frame of a row whose last window reaches past its length reads
the padding of the other rows' lengths; zeroing makes it read what the
convolution's own zero padding gives when the row is encoded alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast, final

from fairseq2.models.transformer import (
    AttentionBiasCache,
    FeedForwardNetwork,
    IdentityBias,
    MultiheadAttention,
    StandardFeedForwardNetwork,
    StandardMultiheadAttention,
    create_default_sdpa,
)
from fairseq2.nn import BatchLayout, LayerNorm, StandardLayerNorm
from torch import Tensor
from torch.nn import GLU, Conv1d, Module, ModuleList

from speechmapper_plugin.models.frames import conv_output_length, zero_padding


@final
class LengthAdaptorLayer(Module):
    """One adaptor layer: pools by ``stride``, then self-attention and an FFN."""

    def __init__(
        self,
        model_dim: int,
        num_attn_heads: int,
        ffn_inner_dim: int,
        kernel_size: int,
        stride: int,
    ) -> None:
        super().__init__()

        self.kernel_size = kernel_size
        self.stride = stride

        # Meta pads `kernel_size // 2`, transformers `stride // 2`: the same
        # for the released kernel 8, stride 8. Both count output lengths with
        # `kernel_size // 2`, so that is the padding used here.
        self.padding = kernel_size // 2

        self.residual_layer_norm = StandardLayerNorm(model_dim, bias=True)
        self.residual_conv = self._pooling_conv(model_dim)

        self.self_attn_layer_norm = StandardLayerNorm(model_dim, bias=True)
        self.self_attn_conv = self._pooling_conv(model_dim)

        self.self_attn: MultiheadAttention = StandardMultiheadAttention(
            model_dim, num_attn_heads, create_default_sdpa(IdentityBias())
        )

        self.ffn_layer_norm = StandardLayerNorm(model_dim, bias=True)
        self.ffn: FeedForwardNetwork = StandardFeedForwardNetwork(
            model_dim, ffn_inner_dim, bias=True
        )

        self.glu = GLU(dim=-1)

    def _pooling_conv(self, model_dim: int) -> Conv1d:
        return Conv1d(
            model_dim,
            2 * model_dim,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
        )

    def output_lengths(self, seq_lens: Sequence[int]) -> list[int]:
        return [
            conv_output_length(n, self.kernel_size, self.stride, self.padding)
            for n in seq_lens
        ]

    def forward(
        self, seqs: Tensor, seqs_layout: BatchLayout
    ) -> tuple[Tensor, BatchLayout]:
        seq_lens = seqs_layout.seq_lens_pt

        residual = self._pool(
            self.residual_layer_norm, self.residual_conv, seqs, seq_lens
        )

        seqs = self._pool(
            self.self_attn_layer_norm, self.self_attn_conv, seqs, seq_lens
        )

        seqs_layout = BatchLayout.of(seqs, self.output_lengths(seqs_layout.seq_lens))

        seqs = self.self_attn(
            seqs,
            seqs_layout,
            keys=seqs,
            keys_layout=seqs_layout,
            values=seqs,
            bias_cache=AttentionBiasCache(),
        )

        seqs = seqs + residual

        seqs = seqs + self.ffn(self.ffn_layer_norm(seqs))

        return seqs, seqs_layout

    def _pool(
        self, layer_norm: LayerNorm, conv: Conv1d, seqs: Tensor, seq_lens: Tensor
    ) -> Tensor:
        """LayerNorm, zero the padding, convolve along time, GLU."""
        seqs = zero_padding(layer_norm(seqs), seq_lens)

        # (N, S, M) -> (N, M, S) -> (N, 2M, S') -> (N, S', 2M)
        seqs = conv(seqs.transpose(1, 2)).transpose(1, 2)

        return self.glu(seqs)

    if TYPE_CHECKING:
        __call__ = forward


@final
class LengthAdaptor(Module):
    """The intermediate FFN, the adaptor layers and their final LayerNorm."""

    def __init__(
        self,
        ffn: FeedForwardNetwork,
        layers: Sequence[LengthAdaptorLayer],
        layer_norm: LayerNorm,
    ) -> None:
        super().__init__()

        if not layers:
            raise ValueError("The length adaptor needs at least one layer.")

        self.ffn = ffn
        self.layers = ModuleList(layers)
        self.layer_norm = layer_norm

    def output_lengths(self, seq_lens: Sequence[int]) -> list[int]:
        """The frame counts of rows of ``seq_lens`` encoder frames after the adaptor."""
        lengths = list(seq_lens)
        for layer in cast(Sequence[LengthAdaptorLayer], self.layers):
            lengths = layer.output_lengths(lengths)
        return lengths

    def forward(
        self, seqs: Tensor, seqs_layout: BatchLayout
    ) -> tuple[Tensor, BatchLayout]:
        """
        :param seqs: The LayerNorm'd output of the last Conformer block.
        :returns: The adaptor's output and its layout; positions past a row's
            length are padding (undefined values).
        """
        seqs = seqs + 0.5 * self.ffn(seqs)

        for layer in self.layers:
            seqs, seqs_layout = layer(seqs, seqs_layout)

        return self.layer_norm(seqs), seqs_layout

    if TYPE_CHECKING:
        __call__ = forward
