"""Batch feature extraction with Whisper: waveforms of any length -> layer-L features.

Whisper's encoder only sees whole windows (30 s, 1500 positions, for the
released models), so:

- **shorter audio** is zero-padded to one window in the waveform, exactly as
  transformers' ``WhisperFeatureExtractor`` does for Whisper itself; the
  encoder runs on the whole window (unmasked, as trained) and only the
  *valid positions* are kept: ``(n // 160 + 1) // 2`` for ``n`` samples, the
  positions whose receptive field starts inside the audio. The padded tail
  is never returned (it would be ~1500 frames of silence features).
- **longer audio** is cut into consecutive windows (the last one padded as
  above); each is encoded on its own and the valid positions of all windows
  are concatenated, so an utterance of ``n`` samples yields the sum of its
  windows' valid positions (50 per second).

Log-mel spectrograms come from transformers' ``WhisperFeatureExtractor``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from fairseq2.device import Device
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from speechmapper_plugin.audio import (
    SAMPLE_RATE,
    AudioSource,
    AudioTooShortError,
    load_audio,
)
from speechmapper_plugin.models.encoder_output import (
    module_device,
    resolve_output_layer,
)
from speechmapper_plugin.models.frames import average_frames, zero_padding
from speechmapper_plugin.models.whisper_encoder.config import (
    POSITIONS_PER_SECOND,
    WHISPER_HOP_LENGTH,
    WhisperEncoderConfig,
)
from speechmapper_plugin.models.whisper_encoder.model import WhisperEncoder


def num_valid_positions(num_samples: int) -> int:
    """Encoder positions of ``num_samples`` of audio within one window."""
    return (num_samples // WHISPER_HOP_LENGTH + 1) // 2


def window_spans(num_samples: int, window: int) -> list[tuple[int, int]]:
    """``(start, end)`` sample spans of the windows of an utterance; a
    remainder too short for one position is dropped."""
    spans = []
    for start in range(0, num_samples, window):
        end = min(start + window, num_samples)
        if num_valid_positions(end - start) > 0:
            spans.append((start, end))
    return spans


def create_log_mel_extractor(config: WhisperEncoderConfig) -> object:
    """transformers' ``WhisperFeatureExtractor`` for ``config``'s mel bins and window."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=config.num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        hop_length=WHISPER_HOP_LENGTH,
        chunk_length=config.window_seconds,
    )


class WhisperSpeechFeatureExtractor:
    """Extracts the hidden states of one Whisper encoder layer for a batch of waveforms.

    Same interface as the SeamlessM4T ``SpeechFeatureExtractor``.

    :param layer: 1-based encoder layer; defaults to the model config's.
    :param layer_norm: Apply the encoder's final LayerNorm; defaults to the
        model config's.
    :param frame_averaging: Average this many consecutive frames (2 turns
        50 Hz into 25 Hz, SpeechMapper's input rate); a remainder is dropped.
    :param max_windows: Windows encoded at once (memory bound).
    """

    def __init__(
        self,
        model: WhisperEncoder,
        *,
        layer: int | None = None,
        layer_norm: bool | None = None,
        frame_averaging: int = 1,
        max_windows: int = 16,
        dtype: torch.dtype = torch.float32,
        device: Device | str | None = None,
    ) -> None:
        config = model.config

        self.layer, self.layer_norm = resolve_output_layer(
            config_layer=config.output_layer,
            config_layer_norm=config.output_layer_norm,
            num_layers=model.num_layers,
            layer=layer,
            layer_norm=layer_norm,
            frame_averaging=frame_averaging,
        )

        if max_windows < 1:
            raise ValueError(f"`max_windows` must be positive, but is {max_windows}.")

        self.frame_averaging = frame_averaging
        self.max_windows = max_windows
        self.dtype = dtype
        self.device = (
            torch.device(device) if device is not None else module_device(model)
        )

        self.model = model.to(device=self.device, dtype=dtype).eval()

        self._log_mel = create_log_mel_extractor(config)

    @property
    def frame_rate(self) -> float:
        """Output frames per second."""
        return POSITIONS_PER_SECOND / self.frame_averaging

    @property
    def min_num_samples(self) -> int:
        """The shortest 16 kHz waveform that yields one output frame."""
        return (2 * self.frame_averaging - 1) * WHISPER_HOP_LENGTH

    def log_mels(self, windows: Sequence[Tensor]) -> Tensor:
        """Whisper log-mels of (at most one window long) waveforms, each padded
        to a whole window. *Shape:* ``[N, num_mel_bins, num_mel_frames]``."""
        features = self._log_mel(  # type: ignore[operator]
            [w.numpy() for w in windows],
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
        )
        mels: Tensor = features["input_features"]
        return mels

    # `no_grad`, not `inference_mode`: the features may feed a trained projector.
    @torch.no_grad()
    def __call__(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """
        :param waveforms: Mono float waveforms at 16 kHz, any lengths.
        :returns: Features ``[B, T, model_dim]`` in ``dtype`` with zeros past
            each row's length, and the lengths ``[B]`` (int64).
        :raises AudioTooShortError: if a waveform is shorter than
            :attr:`min_num_samples`.
        """
        if not waveforms:
            raise ValueError("`waveforms` must not be empty.")

        window = self.model.config.window_num_samples

        chunks: list[Tensor] = []
        owners: list[int] = []
        for i, waveform in enumerate(waveforms):
            if waveform.dim() != 1:
                raise ValueError(
                    f"Waveform {i} must be mono, of shape [samples], but has shape {tuple(waveform.shape)}."
                )
            if waveform.numel() < self.min_num_samples:
                raise AudioTooShortError(
                    waveform.numel(), self.min_num_samples, SAMPLE_RATE
                )
            samples = waveform.detach().float().cpu()
            for start, end in window_spans(samples.numel(), window):
                chunks.append(samples[start:end])
                owners.append(i)

        outputs: list[Tensor] = []
        for begin in range(0, len(chunks), self.max_windows):
            batch = chunks[begin : begin + self.max_windows]
            mels = self.log_mels(batch).to(device=self.device, dtype=self.dtype)
            seqs = self.model(mels, layer=self.layer, layer_norm=self.layer_norm)
            for chunk, seq in zip(batch, seqs, strict=True):
                outputs.append(seq[: num_valid_positions(chunk.numel())])

        per_utterance: list[list[Tensor]] = [[] for _ in waveforms]
        for owner, output in zip(owners, outputs, strict=True):
            per_utterance[owner].append(output)

        joined = [torch.cat(parts) for parts in per_utterance]

        seqs = pad_sequence(joined, batch_first=True)
        seq_lens = torch.tensor([j.size(0) for j in joined], device=self.device)

        seqs, seq_lens = average_frames(seqs, seq_lens, self.frame_averaging)

        return zero_padding(seqs, seq_lens), seq_lens

    def extract_files(self, sources: Sequence[AudioSource]) -> tuple[Tensor, Tensor]:
        """Decode, downmix and resample audio files (or bytes), then extract."""
        return self([load_audio(source) for source in sources])
