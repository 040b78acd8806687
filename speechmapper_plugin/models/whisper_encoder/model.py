"""The Whisper encoder: log-mel windows -> hidden states of one layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from fairseq2.models.transformer import StandardTransformerEncoder
from fairseq2.nn import BatchLayout, LayerNorm, PositionEncoder
from torch import Tensor
from torch.nn import GELU, Conv1d, Module
from typing_extensions import override

from speechmapper_plugin.models.speech_encoder import SpeechEncoder
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


@final
class WhisperEncoder(SpeechEncoder[WhisperEncoderConfig]):
    """Maps whole log-mel windows ``[N, num_mel_bins, 3000]`` to the hidden
    states of one block, ``[N, 1500, model_dim]`` (50 Hz).

    Whisper is trained on 30-second windows only: every window is full length
    (shorter audio is zero-padded *in the waveform*, as Whisper's feature
    extractor does) and attention is never masked, exactly as in OpenAI's and
    transformers' encoders. Cutting the valid positions out of padded windows
    and chunking long audio is :class:`WhisperFeatureExtractor`'s job.
    """

    frontend: WhisperFrontend
    encoder: StandardTransformerEncoder

    def __init__(
        self,
        config: WhisperEncoderConfig,
        frontend: WhisperFrontend,
        encoder: StandardTransformerEncoder,
    ) -> None:
        super().__init__(config)
        self.frontend = frontend
        self.encoder = encoder

    @property
    @override
    def final_layer_norm(self) -> LayerNorm | None:
        return self.encoder.layer_norm

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
        layer, layer_norm = self.output_layer(layer, layer_norm)

        seqs, layout = self.embed(mels)

        return self.run_layers(seqs, layout, layer, layer_norm)

    def embed(self, mels: Tensor) -> tuple[Tensor, BatchLayout]:
        """The frontend output (transformers' ``hidden_states[0]``)."""
        config = self.config
        expected = (config.num_mel_bins, config.num_mel_frames)
        if mels.dim() != 3 or tuple(mels.shape[1:]) != expected:
            raise ValueError(
                f"`mels` must be whole Whisper windows of shape [batch, {expected[0]}, {expected[1]}], but has shape {tuple(mels.shape)}; pad or chunk the audio to {config.window_seconds} s windows first (WhisperFeatureExtractor does)."
            )

        return self.frontend(mels)

    if TYPE_CHECKING:
        __call__ = forward
