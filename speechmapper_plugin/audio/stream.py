"""Audio in chunks, so long recordings never sit in memory whole.

Every format libsndfile reads (WAV of any sample format, FLAC, Ogg/Vorbis,
Opus, MP3) is decoded block by block with ``soundfile``, from a path or from
encoded bytes, downmixed like :func:`~speechmapper_plugin.audio.channels.to_mono`
and resampled with a streaming soxr resampler: memory stays flat in the
recording's length (an hour of 44.1 kHz stereo FLAC or MP3 adds ~60 MB of
RSS streamed, 2.04 GB decoded whole; ``tests/test_audio_stream.py`` checks
it on 1 and 8 minutes). What ``soundfile`` cannot open goes through
:func:`~speechmapper_plugin.audio.decode.load_audio`, so undecodable input
fails with the same :class:`AudioDecodeError` (and the AAC/``.m4a`` hint) as
the whole-file path; in-memory waveforms are only cut. Where the whole
waveform is needed, :func:`load_streamed` joins the chunks into one tensor
(an hour of 44.1 kHz stereo FLAC: +276 MB RSS rather than +2.04 GB).

``soundfile``'s wheels bring their own libsndfile (1.2.2, MP3/Opus built in).
Imported after fairseq2 (as this package does), it loads beside the system
one fairseq2's ``AudioDecoder`` links (Debian 12: 1.2.0); imported before,
fairseq2n binds to it too (the same soname). Either way both decode the
same samples (``tests/test_audio_stream.py`` compares them per format).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import numpy as np
import soundfile
import soxr
import torch
from torch import Tensor

from speechmapper_plugin.audio.channels import to_mono
from speechmapper_plugin.audio.decode import (
    AudioSource,
    decode_audio,
    load_audio,
    source_name,
)
from speechmapper_plugin.audio.errors import AudioDecodeError, AudioError
from speechmapper_plugin.audio.resample import TARGET_SAMPLE_RATE

DEFAULT_CHUNK_SAMPLES = 30 * TARGET_SAMPLE_RATE
"""30 s of 16 kHz audio (1.9 MB of float32) per chunk."""


def stream_audio(
    source: AudioSource | Tensor,
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Iterator[Tensor]:
    """Mono float32 16 kHz chunks of ``chunk_samples`` (the last may be
    shorter) that join to what :func:`load_audio` gives for ``source``.

    :param source: A path or encoded bytes, or a mono 16 kHz waveform.
    :raises AudioDecodeError: naming the file, if the data is not decodable
        audio; a file that breaks off before the length its header states
        raises it when the stream gets there (after the chunks before).
    :raises OSError: if a path cannot be read.
    """
    if chunk_samples < 1:
        raise ValueError(f"`chunk_samples` must be positive, but is {chunk_samples}.")

    if isinstance(source, Tensor):
        for start in range(0, source.numel(), chunk_samples):
            yield source[start : start + chunk_samples].to(torch.float32)
        return

    sound = _open(source)
    if sound is None:
        waveform = load_audio(source)  # raises what the whole-file path raises
        yield from stream_audio(waveform, chunk_samples=chunk_samples)
        return

    with sound:
        yield from _stream(sound, source_name(source), chunk_samples)


def load_streamed(source: AudioSource) -> Tensor:
    """What :func:`load_audio` gives (within the streaming resampler's 1e-6),
    decoded chunk by chunk into one tensor of the header's length: the peak
    is the 16 kHz result, not the decoded file (for when the whole waveform
    is needed, e.g. an upload). Files that do not stream are decoded whole.

    :raises AudioDecodeError: naming the file, if it is not decodable audio.
    :raises OSError: if a path cannot be read.
    """
    length = num_samples_16k(source) if is_streamable(source) else None
    if length is None:
        return load_audio(source)

    waveform = torch.empty(length, dtype=torch.float32)
    end = 0
    for chunk in stream_audio(source):
        if end + chunk.numel() > length:  # never seen: the header's count is exact
            raise AudioDecodeError(
                source_name(source),
                f"it holds more than the {length} samples (at 16 kHz) its header states.",
            )
        waveform[end : end + chunk.numel()] = chunk
        end += chunk.numel()
    return waveform[:end]


def is_streamable(source: object) -> bool:
    """Whether :func:`stream_audio` reads ``source`` chunk by chunk (a path
    or the bytes of any audio file libsndfile opens that states its length;
    not an MP3 without a Xing/Info/VBRI header) rather than decoding it
    whole. Only the header is read."""
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return False
    sound = _open(source)
    if sound is None:
        return False
    sound.close()
    return True


def num_samples_16k(source: AudioSource) -> int | None:
    """The length :func:`stream_audio` and :func:`load_audio` give for
    ``source``, from the file's header where it states its frame count
    (WAV, FLAC, Ogg; MP3 in its Xing/Info or VBRI header), else by decoding
    it; ``None`` if it cannot be read."""
    sound = _open(source)
    if sound is not None:
        with sound:
            frames, rate = sound.frames, sound.samplerate
    else:
        try:
            decoded = decode_audio(source)
        except (AudioError, OSError):
            return None
        frames, rate = decoded.waveform.size(0), decoded.sample_rate
    if rate == TARGET_SAMPLE_RATE:
        return frames
    # soxr's output length: the exact ratio rounded half up.
    return (2 * frames * TARGET_SAMPLE_RATE + rate) // (2 * rate)


def _open(source: AudioSource) -> soundfile.SoundFile | None:
    """``source`` opened for block reads, or ``None`` if libsndfile (as
    bundled with ``soundfile``) does not open it or finds no frames."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        file: str | io.BytesIO = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        file = os.fspath(source)
    else:
        return None

    try:
        sound = soundfile.SoundFile(file)
    except (soundfile.SoundFileError, OSError):
        return None  # not audio, a missing file, AAC, ...: load_audio says why

    # libsndfile's "length unknown" (a stream without a header count).
    if sound.frames <= 0 or sound.frames >= 2**62 or not _states_length(sound, source):
        sound.close()
        return None
    return sound


_MP3_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")
"""The headers in an MP3's first frame that state its length in frames."""


def _states_length(sound: soundfile.SoundFile, source: AudioSource) -> bool:
    """Whether libsndfile's frame count is the file's own: an MP3 states it
    only in a Xing/Info (LAME, ffmpeg) or VBRI header; without one libsndfile
    estimates it from the file size and reads no further, a few frames too
    many for constant bitrate and far too few for variable bitrate. Those
    rare files take the whole-file path, as before (which, with Debian's
    libsndfile 1.2.0, refuses them: it finds no frames)."""
    if sound.format != "MP3":
        return True
    head = _read(source, 0, 10)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:  # an ID3v2 tag comes first
        start = 10 + sum(
            (byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:])
        )
        start += 10 if head[5] & 0x10 else 0  # its footer
    first_frame = _read(source, start, 256)
    return any(tag in first_frame for tag in _MP3_LENGTH_TAGS)


def _read(source: AudioSource, offset: int, size: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(memoryview(source)[offset : offset + size])
    with open(source, "rb") as file:
        file.seek(offset)
        return file.read(size)


def _stream(
    sound: soundfile.SoundFile, name: str, chunk_samples: int
) -> Iterator[Tensor]:
    rate = sound.samplerate
    frames = sound.frames

    resampler = (
        None
        if rate == TARGET_SAMPLE_RATE
        else soxr.ResampleStream(rate, TARGET_SAMPLE_RATE, 1, "float32", "HQ")
    )
    # Frames read per step: ``chunk_samples`` at the output rate.
    step = max(1, round(chunk_samples * rate / TARGET_SAMPLE_RATE))

    pending = np.zeros(0, dtype=np.float32)
    remaining = frames
    while remaining > 0:
        try:
            block = sound.read(min(step, remaining), dtype="float32", always_2d=True)
        except soundfile.SoundFileError as ex:
            raise AudioDecodeError(
                name, f"{ex} (after {frames - remaining} of {frames} frames)."
            ) from ex
        if len(block) == 0:
            # fairseq2's AudioDecoder refuses such a file whole, too.
            raise AudioDecodeError(
                name,
                f"it ends after {frames - remaining} of the {frames} frames its "
                "header states (a truncated file?).",
            )
        remaining -= len(block)
        mono = to_mono(torch.from_numpy(block), channel_dim=1).numpy()
        if resampler is not None:
            mono = resampler.resample_chunk(mono, last=remaining == 0)
        pending = np.concatenate([pending, mono.astype(np.float32, copy=False)])
        while pending.size >= chunk_samples:
            yield torch.from_numpy(pending[:chunk_samples].copy())
            pending = pending[chunk_samples:]
    if pending.size:
        yield torch.from_numpy(pending.copy())
