"""Strided convolutions as a length adapter: a fixed rate reduction."""

from __future__ import annotations

from torch import Tensor
from torch.nn import GELU, Conv1d, Module, ModuleList

from speechmapper_plugin.models.frames import conv_output_length, zero_padding


class ConvLengthAdapter(Module):
    """Strided Conv1d -> GELU, ``num_conv_layers`` times."""

    convs: ModuleList

    def __init__(self, convs: list[Conv1d]) -> None:
        super().__init__()
        self.convs = ModuleList(convs)
        self.activation = GELU()

    def forward(self, seqs: Tensor, seq_lens: Tensor) -> tuple[Tensor, Tensor]:
        for conv in self.convs:
            assert isinstance(conv, Conv1d)
            # Padding positions act as the conv's zero padding, as in the projector.
            seqs = zero_padding(seqs, seq_lens)
            seqs = self.activation(conv(seqs.transpose(1, 2)).transpose(1, 2))
            seq_lens = conv_output_length(
                seq_lens,
                conv.kernel_size[0],
                conv.stride[0],
                int(conv.padding[0]),
            )
        return seqs, seq_lens
