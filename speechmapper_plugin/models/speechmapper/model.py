"""The SpeechMapper projector: SFM features -> LLM token-embedding space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fairseq2.models.transformer import TransformerEncoder
from fairseq2.nn import BatchLayout, Linear, PositionEncoder
from torch import Tensor
from torch.nn import Conv1d, Module, ModuleList

from speechmapper_plugin.models.frames import (
    average_frames,
    conv_output_length,
    zero_padding,
)
from speechmapper_plugin.models.projector_base import SpeechProjector
from speechmapper_plugin.models.speechmapper.config import SpeechMapperConfig


class ProjectorBlock(Module):
    """Strided Conv1d -> (position encoding) -> Transformer encoder -> Linear."""

    conv: Conv1d
    pos_encoder: PositionEncoder | None
    encoder: TransformerEncoder
    proj: Linear

    def __init__(
        self,
        conv: Conv1d,
        pos_encoder: PositionEncoder | None,
        encoder: TransformerEncoder,
        proj: Linear,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.pos_encoder = pos_encoder
        self.encoder = encoder
        self.proj = proj

    def output_length(self, length: Tensor) -> Tensor:
        return conv_output_length(
            length,
            self.conv.kernel_size[0],
            self.conv.stride[0],
            int(self.conv.padding[0]),
        )

    def forward(self, seqs: Tensor, seq_lens: Tensor) -> tuple[Tensor, Tensor]:
        # Padded positions hold arbitrary values (batch padding or the previous
        # block's outputs there); zero them so they act as conv zero padding
        # and never leak into valid positions.
        seqs = zero_padding(seqs, seq_lens)

        # Features arrive in float32 (feature stores, the loss); a projector
        # cast to bf16/fp16 (static mixed precision, FSDP's unsharded
        # parameters) computes in its own dtype. Read at call time: under FSDP
        # the weight is the unsharded one only inside this forward.
        seqs = seqs.to(self.conv.weight.dtype)

        # [B, T, C] -> [B, C, T] -> conv -> [B, T', C']
        seqs = self.conv(seqs.transpose(1, 2)).transpose(1, 2)

        seq_lens = self.output_length(seq_lens)

        layout = BatchLayout.of(seqs, seq_lens.tolist())

        if self.pos_encoder is not None:
            seqs = self.pos_encoder(seqs, layout)

        seqs = self.encoder(seqs, layout)

        return self.proj(seqs), seq_lens


class SpeechMapperProjector(SpeechProjector):
    """Maps SFM features ``[B, T, input_dim]`` to ``[B, T', output_dim]``.

    Positions at or beyond an output row's length are padding and hold
    undefined values; use the returned layout (or ``zero_padding``).
    """

    config: SpeechMapperConfig
    blocks: ModuleList
    final_proj: Linear

    def __init__(
        self,
        config: SpeechMapperConfig,
        blocks: Sequence[ProjectorBlock],
        final_proj: Linear,
    ) -> None:
        super().__init__(config)
        self.blocks = ModuleList(blocks)
        self.final_proj = final_proj

    def forward(
        self, seqs: Tensor, seqs_layout: BatchLayout, *, pre_averaged: bool = False
    ) -> tuple[Tensor, BatchLayout]:
        """
        :param seqs: SFM features. *Shape:* ``[B, T, input_dim]``, right-padded.
        :param seqs_layout: The lengths of ``seqs``.
        :param pre_averaged: ``seqs`` were already averaged
            ``config.frame_averaging``:1 (e.g. read from a feature store).
        :raises ProjectorInputTooShortError: if a row yields no output.
        """
        seq_lens = self.check_input(seqs, seqs_layout, pre_averaged=pre_averaged)

        if not pre_averaged:
            seqs, seq_lens = average_frames(seqs, seq_lens, self.config.frame_averaging)

        for block in self.blocks:
            seqs, seq_lens = block(seqs, seq_lens)

        seqs = self.final_proj(seqs)

        return seqs, BatchLayout.of(seqs, seq_lens.tolist())

    if TYPE_CHECKING:
        __call__ = forward
