"""Audio in chunks, so long recordings never sit in memory whole.

PCM WAV files (8/16/32-bit integer, the format of corpora and of what
``sox``/``ffmpeg`` write by default) are read chunk by chunk with the
standard library's ``wave`` and resampled with a streaming soxr resampler:
memory stays flat in the recording's length. Other encoded formats go
through :func:`load_audio` (libsndfile decodes them whole), and in-memory
waveforms are only cut.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from torch import Tensor

from speechmapper_plugin.audio.decode import AudioSource, decode_audio, load_audio
from speechmapper_plugin.audio.errors import AudioError
from speechmapper_plugin.audio.resample import TARGET_SAMPLE_RATE

DEFAULT_CHUNK_SAMPLES = 30 * TARGET_SAMPLE_RATE
"""30 s of 16 kHz audio (1.9 MB of float32) per chunk."""

_PCM_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.uint8),
    2: np.dtype("<i2"),
    4: np.dtype("<i4"),
}


def stream_audio(
    source: AudioSource | Tensor,
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Iterator[Tensor]:
    """Mono float32 16 kHz chunks of ``chunk_samples`` (the last may be
    shorter) that join to what :func:`load_audio` gives for ``source``.

    :param source: A path or encoded bytes, or a mono 16 kHz waveform.
    :raises AudioDecodeError: if the data is not decodable audio (WAV files
        are not checked beyond their header until read).
    """
    if chunk_samples < 1:
        raise ValueError(f"`chunk_samples` must be positive, but is {chunk_samples}.")

    if isinstance(source, Tensor):
        for start in range(0, source.numel(), chunk_samples):
            yield source[start : start + chunk_samples].to(torch.float32)
        return

    reader = _open_pcm_wav(source)
    if reader is None:
        waveform = load_audio(source)
        yield from stream_audio(waveform, chunk_samples=chunk_samples)
        return

    with reader:
        yield from _stream_wav(reader, chunk_samples)


def is_streamable(source: object) -> bool:
    """Whether :func:`stream_audio` reads ``source`` chunk by chunk (a PCM
    WAV path or its bytes) rather than decoding it whole."""
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return False
    reader = _open_pcm_wav(source)
    if reader is None:
        return False
    reader.close()
    return True


def num_samples_16k(source: AudioSource) -> int | None:
    """The 16 kHz length of ``source``: from the header of a PCM WAV file
    (nothing decoded), else by decoding it; ``None`` if it cannot be read."""
    reader = _open_pcm_wav(source)
    if reader is not None:
        with reader:
            frames, rate = reader.getnframes(), reader.getframerate()
    else:
        try:
            decoded = decode_audio(source)
        except (AudioError, OSError):
            return None
        frames, rate = decoded.waveform.size(0), decoded.sample_rate
    return frames * TARGET_SAMPLE_RATE // rate


def _open_pcm_wav(source: AudioSource) -> wave.Wave_read | None:
    """A reader if ``source`` is an integer PCM WAV file, else ``None``."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            reader = wave.open(io.BytesIO(bytes(source)), "rb")
        elif isinstance(source, (str, os.PathLike)):
            reader = wave.open(str(Path(source)), "rb")
        else:
            return None
    except (wave.Error, EOFError, OSError):
        return None  # not WAV, or a WAV format `wave` does not read (float)

    if reader.getsampwidth() not in _PCM_DTYPES or reader.getnframes() == 0:
        reader.close()
        return None
    return reader


def _stream_wav(reader: wave.Wave_read, chunk_samples: int) -> Iterator[Tensor]:
    rate = reader.getframerate()
    channels = reader.getnchannels()
    width = reader.getsampwidth()
    dtype = _PCM_DTYPES[width]
    scale = float(2 ** (8 * width - 1))

    resampler = (
        None
        if rate == TARGET_SAMPLE_RATE
        else soxr.ResampleStream(rate, TARGET_SAMPLE_RATE, 1, "float32", "HQ")
    )
    # Frames read per step: ``chunk_samples`` at the output rate.
    step = max(1, round(chunk_samples * rate / TARGET_SAMPLE_RATE))

    pending = np.zeros(0, dtype=np.float32)
    remaining = reader.getnframes()
    while remaining > 0:
        data = reader.readframes(min(step, remaining))
        frames = len(data) // (width * channels)
        if frames == 0:
            break  # a truncated file: it ends before its header says
        remaining -= frames
        samples = np.frombuffer(data[: frames * width * channels], dtype=dtype)
        samples = samples.reshape(frames, channels).astype(np.float32)
        if width == 1:
            samples -= 128.0
        mono = samples.mean(axis=1) / scale
        if resampler is not None:
            mono = resampler.resample_chunk(mono, last=remaining == 0)
        pending = np.concatenate([pending, mono.astype(np.float32, copy=False)])
        while pending.size >= chunk_samples:
            yield torch.from_numpy(pending[:chunk_samples].copy())
            pending = pending[chunk_samples:]
    if pending.size:
        yield torch.from_numpy(pending.copy())
