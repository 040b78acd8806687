"""Exceptions for audio that cannot be turned into encoder input.

Every one of them subclasses :class:`AudioError` (itself a ``ValueError``), so a
pipeline can skip and count bad utterances with a single ``except AudioError``
while genuine I/O failures (``OSError``: missing files, permissions) and bugs
still propagate.
"""

from __future__ import annotations


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
