"""SeamlessM4T's audio front end: 16 kHz waveform -> standardised 80-bin fbank.

The fbank itself is fairseq2n's Kaldi-compatible ``WaveformToFbankConverter``
(25 ms Povey window, 10 ms hop, pre-emphasis 0.97, waveform scaled by 2^15),
exactly what Meta's SeamlessM4T pipeline uses. fairseq2n's own standardisation
divides by the standard deviation without an epsilon, which turns digital
silence (or any constant mel bin) into NaN; we standardise ourselves, per
utterance and mel bin, as Hugging Face's ``SeamlessM4TFeatureExtractor`` does:
``(x - mean) / sqrt(var_unbiased + 1e-7)``.

Frame stacking (2 fbank frames -> one 160-d encoder frame) happens inside the
model, so the lengths here are fbank frames (100 Hz).
"""

from __future__ import annotations

import torch
from fairseq2.data.audio import WaveformToFbankConverter
from torch import Tensor

from speechmapper_plugin.audio.errors import (
    AudioTooShortError,
    InvalidWaveformError,
    check_mono_float,
)

SAMPLE_RATE = 16_000
"""The only sample rate the fbank front end accepts; resample first."""

NUM_MEL_BINS = 80

FBANK_WINDOW_SAMPLES = 400
"""25 ms at 16 kHz."""

FBANK_HOP_SAMPLES = 160
"""10 ms at 16 kHz."""

WAVEFORM_SCALE = 2.0**15
"""Kaldi expects 16-bit integer amplitudes; waveforms arrive in [-1, 1]."""

STANDARDIZE_EPS = 1e-7
"""Added to the variance, as in Hugging Face's SeamlessM4T feature extractor."""

DEFAULT_FBANK_STRIDE = 2


def num_fbank_frames(num_samples: int) -> int:
    """Fbank frames of a 16 kHz waveform (Kaldi ``snip_edges``: no padding)."""
    if num_samples < FBANK_WINDOW_SAMPLES:
        return 0
    return 1 + (num_samples - FBANK_WINDOW_SAMPLES) // FBANK_HOP_SAMPLES


def num_encoder_frames(
    num_samples: int, fbank_stride: int = DEFAULT_FBANK_STRIDE
) -> int:
    """Speech-encoder frames (50 Hz for stride 2) of a 16 kHz waveform."""
    return num_fbank_frames(num_samples) // fbank_stride


def min_num_samples(fbank_stride: int = DEFAULT_FBANK_STRIDE) -> int:
    """The shortest 16 kHz waveform that yields one encoder frame (560 for stride 2)."""
    return FBANK_WINDOW_SAMPLES + FBANK_HOP_SAMPLES * (fbank_stride - 1)


def standardize_fbank(fbank: Tensor, eps: float = STANDARDIZE_EPS) -> Tensor:
    """Zero mean, unit variance per mel bin over time; finite for constant bins.

    Computed in float64 (the statistics of long utterances lose digits in
    float32) and returned in the input dtype.

    :param fbank: *Shape:* ``[frames, bins]`` with at least 2 frames.
    """
    x = fbank.to(torch.float64)
    mean = x.mean(dim=0, keepdim=True)
    var = x.var(dim=0, unbiased=True, keepdim=True)
    return ((x - mean) / torch.sqrt(var + eps)).to(fbank.dtype)


class FbankExtractor:
    """Turns one mono 16 kHz waveform into standardised fbank features.

    :param fbank_stride: The model's frame stacking; used only to reject audio
        that would give the encoder zero frames.
    """

    def __init__(
        self,
        *,
        fbank_stride: int = DEFAULT_FBANK_STRIDE,
        num_mel_bins: int = NUM_MEL_BINS,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if fbank_stride < 1:
            raise ValueError(f"`fbank_stride` must be positive, but is {fbank_stride}.")

        self._fbank_stride = fbank_stride
        self._dtype = dtype
        self._converter = WaveformToFbankConverter(
            num_mel_bins=num_mel_bins,
            waveform_scale=WAVEFORM_SCALE,
            channel_last=True,
            standardize=False,
            dtype=torch.float32,
        )

    @property
    def min_num_samples(self) -> int:
        return min_num_samples(self._fbank_stride)

    def __call__(self, waveform: Tensor) -> Tensor:
        """
        :param waveform: Mono audio at 16 kHz in [-1, 1]. *Shape:* ``[samples]``.
        :returns: *Shape:* ``[num_fbank_frames(samples), num_mel_bins]``, on the
            waveform's device.
        :raises AudioTooShortError: if the encoder would get no frame.
        :raises InvalidWaveformError: for non-1-D, non-float or non-finite input.
        """
        check_mono_float(waveform)

        num_samples = waveform.numel()
        if num_samples < self.min_num_samples:
            raise AudioTooShortError(num_samples, self.min_num_samples, SAMPLE_RATE)

        if not bool(torch.isfinite(waveform).all()):
            raise InvalidWaveformError("The waveform contains NaN or infinite samples.")

        device = waveform.device

        output = self._converter(
            {
                "waveform": waveform.detach().to("cpu", torch.float32).unsqueeze(-1),
                "sample_rate": SAMPLE_RATE,
            }
        )

        fbank = standardize_fbank(output["fbank"])

        return fbank.to(device=device, dtype=self._dtype)
