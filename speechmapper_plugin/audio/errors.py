"""Exceptions for audio that cannot be turned into encoder input.

Every one of them subclasses :class:`AudioError` (itself a ``ValueError``), so a
pipeline can skip and count bad utterances with a single ``except AudioError``
while genuine I/O failures (``OSError``: missing files, permissions) and bugs
still propagate.
"""

from __future__ import annotations

from torch import Tensor


class AudioError(ValueError):
    """Raised when audio is unusable as speech-encoder input."""


class AudioDecodeError(AudioError):
    """Raised when bytes cannot be decoded as audio."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source} cannot be decoded as audio: {reason}")
        self.source = source
        self.reason = reason


class AudioTooShortError(AudioError):
    """Raised when audio is too short to yield a single encoder frame."""

    def __init__(
        self, num_samples: int, min_num_samples: int, sample_rate: int
    ) -> None:
        super().__init__(
            f"Audio of {num_samples} samples ({num_samples / sample_rate:.4f} s at {sample_rate} Hz) is too short: the speech encoder needs at least {min_num_samples} samples ({min_num_samples / sample_rate:.4f} s) to produce one frame."
        )
        self.num_samples = num_samples
        self.min_num_samples = min_num_samples
        self.sample_rate = sample_rate


class InvalidWaveformError(AudioError):
    """Raised for waveforms of the wrong shape or type, or with NaN/inf samples."""


def check_mono_float(
    waveform: Tensor, *, downmix_hint: str = "downmix it with `to_mono` first"
) -> None:
    """Refuses what no front end takes: a waveform that is not 1-D or not
    floating point (16-bit PCM must be scaled to [-1, 1] first).

    :param downmix_hint: What to do about a multichannel waveform.
    :raises InvalidWaveformError: naming the shape or dtype.
    """
    if waveform.dim() != 1:
        raise InvalidWaveformError(
            f"A waveform must be 1-D (mono samples), but has shape {tuple(waveform.shape)}; {downmix_hint}."
        )

    if not waveform.is_floating_point():
        raise InvalidWaveformError(
            f"A waveform must be floating point in [-1, 1], but has dtype {waveform.dtype}; divide 16-bit PCM by 32768."
        )
