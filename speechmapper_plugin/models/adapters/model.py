"""The adapter module: SFM features -> LLM token-embedding space.

Same interface as :class:`~speechmapper_plugin.models.speechmapper.SpeechMapperProjector`
(features and layout in, embeddings and layout out, ``pre_averaged``, exact
lengths, :class:`ProjectorInputTooShortError`), so that the recipes, the
datasets and the pipeline take either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fairseq2.models.transformer import TransformerEncoder
from fairseq2.nn import BatchLayout, Linear, PositionEncoder
from torch import Tensor
from torch.nn import Module

from speechmapper_plugin.models.adapters.aux import AdapterAux, AlignmentTargets
from speechmapper_plugin.models.adapters.config import AdapterConfig
from speechmapper_plugin.models.adapters.kinds import VARIABLE_LENGTH_KINDS
from speechmapper_plugin.models.frames import average_frames, zero_padding
from speechmapper_plugin.models.projector_base import SpeechProjector


class VariableLengthError(ValueError):
    """Raised when exact output lengths are asked of a variable-length adapter."""


class SpeechAdapter(SpeechProjector):
    """Maps SFM features ``[B, T, input_dim]`` to ``[B, T', output_dim]``.

    Positions at or beyond an output row's length are padding.
    """

    name = "adapter"

    config: AdapterConfig
    input_proj: Linear
    frame_pos: PositionEncoder | None
    pre_encoder: TransformerEncoder | None
    length_adapter: Module | None
    post_pos: PositionEncoder | None
    post_encoder: TransformerEncoder | None
    final_proj: Linear

    def __init__(
        self,
        config: AdapterConfig,
        input_proj: Linear,
        frame_pos: PositionEncoder | None,
        pre_encoder: TransformerEncoder | None,
        length_adapter: Module | None,
        post_pos: PositionEncoder | None,
        post_encoder: TransformerEncoder | None,
        final_proj: Linear,
    ) -> None:
        super().__init__(config)
        self.input_proj = input_proj
        self.frame_pos = frame_pos
        self.pre_encoder = pre_encoder
        self.length_adapter = length_adapter
        self.post_pos = post_pos
        self.post_encoder = post_encoder
        self.final_proj = final_proj

    def output_lengths(
        self, input_lengths: Tensor, *, pre_averaged: bool = False
    ) -> Tensor:
        """Exact output lengths for ``input_lengths`` frames (0 = too short).

        :raises VariableLengthError: for ``cif`` and ``ctc_compression``, whose
            lengths depend on the speech: read them from the layout ``forward``
            returns, or use :meth:`max_output_lengths` for a bound.
        """
        if self.config.variable_length:
            raise VariableLengthError(
                f"A `{self.config.kind}` adapter emits as many outputs as it hears tokens: its output lengths are known after the forward pass only (the returned layout); `max_output_lengths` gives an upper bound."
            )
        return self.config.max_output_length(input_lengths, pre_averaged=pre_averaged)

    def forward(
        self,
        seqs: Tensor,
        seqs_layout: BatchLayout,
        *,
        pre_averaged: bool = False,
        targets: AlignmentTargets | None = None,
        aux: AdapterAux | None = None,
    ) -> tuple[Tensor, BatchLayout]:
        """
        :param seqs: SFM features. *Shape:* ``[B, T, input_dim]``, right-padded.
        :param pre_averaged: ``seqs`` were already averaged ``frame_averaging``:1.
        :param targets: variable-length adapters only: emit one output per
            target token (stage 1's per-token mode).
        :param aux: filled with what the adapter's own losses need.
        :raises ProjectorInputTooShortError: if a row yields no output.
        """
        config = self.config

        if targets is not None and not config.variable_length:
            variable = ", ".join(VARIABLE_LENGTH_KINDS)
            raise ValueError(
                f"`targets` only apply to variable-length adapters ({variable}), not to `{config.kind}`."
            )

        seq_lens = self.check_input(seqs, seqs_layout, pre_averaged=pre_averaged)

        if not pre_averaged:
            seqs, seq_lens = average_frames(seqs, seq_lens, config.frame_averaging)

        seqs = zero_padding(seqs, seq_lens)
        seqs = self.input_proj(seqs)
        if self.frame_pos is not None:
            seqs = self.frame_pos(seqs, BatchLayout.of(seqs, seq_lens.tolist()))

        if self.pre_encoder is not None:
            seqs = self.pre_encoder(seqs, BatchLayout.of(seqs, seq_lens.tolist()))

        seqs = zero_padding(seqs, seq_lens)

        if self.length_adapter is not None:
            if config.variable_length:
                seqs, seq_lens = self.length_adapter(
                    seqs, seq_lens, targets=targets, aux=aux
                )
            else:
                seqs, seq_lens = self.length_adapter(seqs, seq_lens)

        if self.post_encoder is not None:
            layout = BatchLayout.of(seqs, seq_lens.tolist())
            if self.post_pos is not None:
                seqs = self.post_pos(seqs, layout)
            seqs = self.post_encoder(seqs, layout)

        seqs = self.final_proj(seqs)

        return seqs, BatchLayout.of(seqs, seq_lens.tolist())

    if TYPE_CHECKING:
        __call__ = forward
