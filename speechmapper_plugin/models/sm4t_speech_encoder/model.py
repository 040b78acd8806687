"""The SeamlessM4T-v2 speech encoder: fbank features -> hidden states of one
layer, or (``length_adaptor``) SeamlessM4T's speech-encoder output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, final

from fairseq2.models.transformer import TransformerEncoder
from fairseq2.models.wav2vec2 import Wav2Vec2Frontend
from fairseq2.nn import BatchLayout, LayerNorm
from torch import Tensor
from typing_extensions import override

from speechmapper_plugin.audio.fbank import min_num_samples
from speechmapper_plugin.models.sm4t_speech_encoder.adaptor import LengthAdaptor
from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4TSpeechEncoderConfig,
)
from speechmapper_plugin.models.speech_encoder import SpeechEncoder


@final
class SM4TSpeechEncoder(SpeechEncoder[SM4TSpeechEncoderConfig]):
    """Maps per-utterance standardised log-mel fbanks ``[N, S, 80]`` to the
    hidden states of one Conformer block, ``[N, S // 2, model_dim]`` at 50 Hz,
    or, with ``config.length_adaptor``, to the output of the length adaptor
    after the last block (6.25 Hz for the released stride 8).

    Module names follow fairseq2's w2v-BERT/wav2vec2 models, so checkpoints
    saved from this module and fairseq2-0.2 SeamlessM4T checkpoints differ only
    by prefix (see ``interop.py``).
    """

    encoder_frontend: Wav2Vec2Frontend
    inner_layer_norm: LayerNorm
    length_adaptor: LengthAdaptor | None

    def __init__(
        self,
        config: SM4TSpeechEncoderConfig,
        encoder_frontend: Wav2Vec2Frontend,
        encoder: TransformerEncoder,
        inner_layer_norm: LayerNorm,
        length_adaptor: LengthAdaptor | None = None,
    ) -> None:
        super().__init__(config)
        self.encoder_frontend = encoder_frontend
        self.encoder = encoder
        self.inner_layer_norm = inner_layer_norm

        if config.length_adaptor != (length_adaptor is not None):
            raise ValueError(
                f"`config.length_adaptor` is {config.length_adaptor}, but a length adaptor was{'' if length_adaptor is not None else ' not'} given."
            )

        self.length_adaptor = length_adaptor

    @override
    def output_layer(
        self, layer: int | None = None, layer_norm: bool | None = None
    ) -> tuple[int, bool]:
        """As the base class; with the length adaptor, only the LayerNorm'd
        last layer (what the adaptor reads) can be asked for.

        :raises ValueError: on another layer or ``layer_norm=False`` with the
            length adaptor.
        """
        layer, layer_norm = super().output_layer(layer, layer_norm)

        if self.length_adaptor is not None and (
            layer != self.num_layers or not layer_norm
        ):
            raise ValueError(
                f"This encoder returns features after SeamlessM4T's length adaptor (`length_adaptor=True`), which follows layer {self.num_layers} after the final LayerNorm; layer {layer} with `layer_norm={layer_norm}` is not available from it. Load the encoder without the adaptor (arch `large` or `tiny`, or a card without `_adaptor`) for other layers."
            )

        return layer, layer_norm

    def output_lengths(self, seq_lens: Sequence[int]) -> list[int]:
        """The output frame counts of rows of ``seq_lens`` 50 Hz encoder frames."""
        if self.length_adaptor is None:
            return list(seq_lens)

        return self.length_adaptor.output_lengths(seq_lens)

    @property
    @override
    def final_layer_norm(self) -> LayerNorm:
        """SeamlessM4T's ``inner_layer_norm``: fairseq2's post-norm Conformer
        stack has none of its own."""
        return self.inner_layer_norm

    def forward(
        self,
        seqs: Tensor,
        seqs_layout: BatchLayout,
        *,
        layer: int | None = None,
        layer_norm: bool | None = None,
    ) -> tuple[Tensor, BatchLayout]:
        """
        :param seqs: Log-mel fbanks, standardised per utterance and bin (see
            ``speechmapper_plugin.audio.FbankExtractor``). *Shape:* ``[N, S, C]``,
            right-padded; ``seqs_layout`` holds the fbank frame counts.
        :param layer: The 1-based block whose output to return; defaults to
            ``config.output_layer``. Later blocks are not run.
        :param layer_norm: Apply the encoder's final LayerNorm to that output;
            defaults to ``config.output_layer_norm``.

        :returns: The hidden states ``[N, S // stride, model_dim]`` (with the
            length adaptor: ``[N, T, model_dim]``, ``T`` from
            :meth:`output_lengths`) and their layout. Positions past a row's
            length are padding (undefined values).
        """
        layer, layer_norm = self.output_layer(layer, layer_norm)

        seqs, seqs_layout = self.run_frontend(seqs, seqs_layout)

        seqs = self.run_layers(seqs, seqs_layout, layer, layer_norm)

        if self.length_adaptor is not None:
            return self.length_adaptor(seqs, seqs_layout)

        return seqs, seqs_layout

    def run_frontend(
        self, seqs: Tensor, seqs_layout: BatchLayout
    ) -> tuple[Tensor, BatchLayout]:
        """Stack fbank frames, then LayerNorm and project them to ``model_dim``."""
        if seqs_layout.packed:
            raise ValueError("The speech encoder does not support packed batches.")

        num_channels = self.config.num_fbank_channels
        if seqs.dim() != 3 or seqs.size(-1) != num_channels:
            raise ValueError(
                f"`seqs` must be log-mel fbanks of shape [batch, frames, {num_channels}], but has shape {tuple(seqs.shape)}."
            )

        stride = self.config.fbank_stride
        short = [(i, n) for i, n in enumerate(seqs_layout.seq_lens) if n < stride]
        if short:
            rows = ", ".join(f"row {i}: {n} fbank frames" for i, n in short)
            raise ValueError(
                f"Input too short for the speech encoder ({rows}); it needs at least {stride} fbank frames ({min_num_samples(stride)} samples at 16 kHz) to produce one frame."
            )

        return self.encoder_frontend(seqs, seqs_layout)

    if TYPE_CHECKING:
        __call__ = forward
