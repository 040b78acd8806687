"""The Whisper encoder: log-mel windows -> hidden states of one layer."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING

from fairseq2.models.transformer import AttentionBiasCache, StandardTransformerEncoder
from fairseq2.nn import BatchLayout, PositionEncoder
from torch import Tensor
from torch.nn import GELU, Conv1d, Module

from speechmapper_plugin.models.whisper_encoder.config import WhisperEncoderConfig


class WhisperFrontend(Module):
    """Whisper's convolutional stem: two GELU convolutions (the second with
    stride 2, 100 Hz -> 50 Hz), then fixed sinusoidal positions."""

    def __init__(
        self, conv1: Conv1d, conv2: Conv1d, pos_encoder: PositionEncoder
    ) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.activation = GELU()
        self.pos_encoder = pos_encoder

    def forward(self, mels: Tensor) -> tuple[Tensor, BatchLayout]:
        """:param mels: ``[N, num_mel_bins, 2 * positions]``.
        :returns: ``[N, positions, model_dim]`` and its (unpadded) layout."""
        seqs = self.activation(self.conv1(mels))
        seqs = self.activation(self.conv2(seqs))

        seqs = seqs.transpose(1, 2)

        layout = BatchLayout.of(seqs)

        return self.pos_encoder(seqs, layout), layout

    if TYPE_CHECKING:
        __call__ = forward


class WhisperEncoder(Module):
    """Maps whole log-mel windows ``[N, num_mel_bins, 3000]`` to the hidden
    states of one block, ``[N, 1500, model_dim]`` (50 Hz).

    Whisper is trained on 30-second windows only: every window is full length
    (shorter audio is zero-padded *in the waveform*, as Whisper's feature
    extractor does) and attention is never masked, exactly as in OpenAI's and
    transformers' encoders. Cutting the valid positions out of padded windows
    and chunking long audio is :class:`WhisperFeatureExtractor`'s job.
    """

    config: WhisperEncoderConfig
    frontend: WhisperFrontend
    encoder: StandardTransformerEncoder

    def __init__(
        self,
        config: WhisperEncoderConfig,
        frontend: WhisperFrontend,
        encoder: StandardTransformerEncoder,
    ) -> None:
        super().__init__()
        self.config = config
        self.frontend = frontend
        self.encoder = encoder

    @property
    def model_dim(self) -> int:
        return self.config.model_dim

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    def forward(
        self, mels: Tensor, *, layer: int | None = None, layer_norm: bool | None = None
    ) -> Tensor:
        """
        :param mels: Whisper log-mel spectrograms of whole windows.
            *Shape:* ``[N, num_mel_bins, 2 * max_source_positions]``.
        :param layer: The 1-based block whose output to return; defaults to
            ``config.output_layer``. Later blocks are not run.
        :param layer_norm: Apply the encoder's final LayerNorm to that output;
            defaults to ``config.output_layer_norm``.
        :returns: ``[N, max_source_positions, model_dim]``.
        """
        if layer is None:
            layer = self.config.output_layer

        if layer_norm is None:
            layer_norm = self.config.output_layer_norm

        self._check_layer(layer)

        seqs, layout = self.embed(mels)

        *_, seqs = self.iter_layer_outputs(seqs, layout, num_layers=layer)

        if layer_norm and self.encoder.layer_norm is not None:
            seqs = self.encoder.layer_norm(seqs)

        return seqs

    def embed(self, mels: Tensor) -> tuple[Tensor, BatchLayout]:
        """The frontend output (transformers' ``hidden_states[0]``)."""
        config = self.config
        expected = (config.num_mel_bins, config.num_mel_frames)
        if mels.dim() != 3 or tuple(mels.shape[1:]) != expected:
            raise ValueError(
                f"`mels` must be whole Whisper windows of shape [batch, {expected[0]}, {expected[1]}], but has shape {tuple(mels.shape)}; pad or chunk the audio to {config.window_seconds} s windows first (WhisperFeatureExtractor does)."
            )

        return self.frontend(mels)

    def iter_layer_outputs(
        self, seqs: Tensor, seqs_layout: BatchLayout, *, num_layers: int
    ) -> Iterator[Tensor]:
        """Run the first ``num_layers`` blocks, yielding the raw output of each."""
        self._check_layer(num_layers)

        attn_bias_cache = AttentionBiasCache()

        for block in islice(self.encoder.layers, num_layers):
            seqs = block(seqs, seqs_layout, attn_bias_cache)

            yield seqs

    def _check_layer(self, layer: int) -> None:
        if not 1 <= layer <= self.num_layers:
            raise ValueError(
                f"`layer` is 1-based and must be in [1, {self.num_layers}], but is {layer}."
            )

    if TYPE_CHECKING:
        __call__ = forward
