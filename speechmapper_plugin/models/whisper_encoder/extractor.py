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
from typing import ClassVar, final

import torch
from torch import Tensor
from typing_extensions import Unpack, override

from speechmapper_plugin.audio import SAMPLE_RATE, AudioTooShortError
from speechmapper_plugin.models.speech_encoder import (
    ExtractorOptions,
    SpeechEncoderFeatureExtractor,
)
from speechmapper_plugin.models.whisper_encoder.config import (
    POSITIONS_PER_SECOND,
    WHISPER_ENCODER_FAMILY,
    WHISPER_HOP_LENGTH,
    WhisperEncoderConfig,
)
from speechmapper_plugin.models.whisper_encoder.model import WhisperEncoder
from speechmapper_plugin.padding import pad_sequences


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


@final
class WhisperSpeechFeatureExtractor(SpeechEncoderFeatureExtractor[WhisperEncoder]):
    """Extracts the hidden states of one Whisper encoder layer for a batch of
    waveforms (see :class:`SpeechEncoderFeatureExtractor` for the options).

    :param max_windows: Windows encoded at once (memory bound).
    """

    family: ClassVar[str] = WHISPER_ENCODER_FAMILY

    def __init__(
        self,
        model: WhisperEncoder,
        *,
        max_windows: int = 16,
        **options: Unpack[ExtractorOptions],
    ) -> None:
        if max_windows < 1:
            raise ValueError(f"`max_windows` must be positive, but is {max_windows}.")

        super().__init__(model, **options)

        self.max_windows = max_windows

        self._log_mel = create_log_mel_extractor(model.config)

    @property
    @override
    def frame_rate(self) -> float:
        return POSITIONS_PER_SECOND / self.frame_averaging

    @override
    def num_frames(self, num_samples: int) -> int:
        window = self.model.config.window_num_samples
        return sum(
            num_valid_positions(end - start)
            for start, end in window_spans(num_samples, window)
        )

    @override
    def min_num_samples_for_frames(self, num_frames: int) -> int:
        config = self.model.config
        full, rest = divmod(num_frames, config.max_source_positions)
        if rest == 0:
            full, rest = full - 1, config.max_source_positions
        return full * config.window_num_samples + (2 * rest - 1) * WHISPER_HOP_LENGTH

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

    @override
    def encode(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
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

        seqs, seq_lens = pad_sequences(joined, device=self.device)

        return seqs, seq_lens
