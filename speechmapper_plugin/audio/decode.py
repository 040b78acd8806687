"""Decoding audio files and in-memory bytes with fairseq2's ``AudioDecoder``.

``AudioDecoder`` wraps libsndfile: WAV (PCM/float), FLAC, Ogg/Vorbis, Opus,
MP3 (libsndfile >= 1.1) and the other formats the system's libsndfile supports;
not AAC/``.m4a`` (see :mod:`speechmapper_plugin.audio.formats`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import torch
from fairseq2.data._memory import MemoryBlock
from fairseq2.data.audio import AudioDecoder
from torch import Tensor

from speechmapper_plugin.audio.channels import to_mono
from speechmapper_plugin.audio.errors import AudioDecodeError
from speechmapper_plugin.audio.formats import conversion_hint, is_unsupported
from speechmapper_plugin.audio.resample import TARGET_SAMPLE_RATE, resample

AudioSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview
"""A path to an audio file, or the encoded file's bytes."""


@dataclass(frozen=True)
class DecodedAudio:
    waveform: Tensor
    """float32 samples in [-1, 1]. *Shape:* ``[samples, channels]``."""

    sample_rate: int

    @property
    def num_channels(self) -> int:
        return self.waveform.size(1)

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.waveform.size(0) / self.sample_rate


def source_name(source: AudioSource) -> str:
    """How errors name ``source``: its path, or ``<N bytes>``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(Path(source))


def decode_audio(source: AudioSource) -> DecodedAudio:
    """Decode a file (path) or encoded bytes, keeping channels and sample rate.

    :raises AudioDecodeError: if the data is empty or not decodable audio.
    :raises OSError: if a path cannot be read (missing file, permissions).
    """
    hint = ""
    name = source_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        data = path.read_bytes()
        if is_unsupported(path):
            hint = " " + conversion_hint(path)

    if not data:
        raise AudioDecodeError(name, "it is empty.")

    decoder = AudioDecoder(keepdim=True, dtype=torch.float32)

    try:
        output = decoder(MemoryBlock(data))
    except (ValueError, RuntimeError) as ex:
        cause = ex.__cause__
        reason = f"{ex} ({cause})" if cause is not None else str(ex)
        raise AudioDecodeError(name, reason + hint) from ex

    waveform = output["waveform"]
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(1)

    if waveform.size(0) == 0:
        raise AudioDecodeError(name, "it holds no samples.")

    sample_rate = output["sample_rate"]
    if sample_rate <= 0 or sample_rate != int(sample_rate):
        raise AudioDecodeError(
            name, f"its sample rate {sample_rate} is not a positive integer."
        )

    return DecodedAudio(waveform, int(sample_rate))


def load_audio(source: AudioSource, *, sample_rate: int = TARGET_SAMPLE_RATE) -> Tensor:
    """Decode, downmix to mono and resample: what the speech encoder consumes.

    :returns: float32 samples in [-1, 1] at ``sample_rate``. *Shape:* ``[samples]``.
    :raises AudioDecodeError: if the data is not decodable audio.
    :raises OSError: if a path cannot be read.
    """
    audio = decode_audio(source)

    waveform = to_mono(audio.waveform, channel_dim=1)

    return resample(waveform, audio.sample_rate, sample_rate)
