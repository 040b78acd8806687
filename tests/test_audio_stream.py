"""Streaming every format libsndfile reads (FLAC, MP3, Ogg/Vorbis, Opus,
float, 24- and 8-bit WAV) from a path or bytes: the chunks equal the
whole-file decode, memory does not grow with the recording, and bad files
fail as they do whole."""

from __future__ import annotations

import io
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from speechmapper_plugin.audio import AudioDecodeError, load_audio
from speechmapper_plugin.audio.stream import (
    is_streamable,
    load_streamed,
    num_samples_16k,
    stream_audio,
)
from tests.support.audio import tone

# (suffix, libsndfile format, subtype, sample rate): Opus has no 44.1 kHz.
FORMATS = {
    "flac": (".flac", "FLAC", "PCM_16", 44_100),
    "mp3": (".mp3", "MP3", "MPEG_LAYER_III", 44_100),
    "vorbis": (".ogg", "OGG", "VORBIS", 44_100),
    "opus": (".opus", "OGG", "OPUS", 48_000),
    "float_wav": (".wav", "WAV", "FLOAT", 44_100),
    "pcm24_wav": (".wav", "WAV", "PCM_24", 44_100),
    "pcm_u8_wav": (".wav", "WAV", "PCM_U8", 22_050),
}


def write_stereo(path: Path, kind: str, seconds: float = 3.3) -> Path:
    """Two different tones, one per channel, so a wrong downmix shows."""
    _, fmt, subtype, rate = FORMATS[kind]
    left, right = tone(seconds, rate, seed=1), tone(seconds, rate, freq=300.0)
    soundfile.write(path, np.stack([left, right], 1), rate, subtype=subtype, format=fmt)
    return path


@pytest.mark.parametrize("from_bytes", [False, True], ids=["path", "bytes"])
@pytest.mark.parametrize("kind", list(FORMATS))
def test_every_format_streams_in_chunks_that_join_to_the_whole_decode(
    tmp_path: Path, kind: str, from_bytes: bool
) -> None:
    """The reference is fairseq2's ``AudioDecoder`` (the system libsndfile)
    on the whole file plus one-shot soxr; the stream's only difference is
    the streaming resampler's (< 1e-6, as for PCM WAV in test_long_form)."""
    path = write_stereo(tmp_path / f"a{FORMATS[kind][0]}", kind)
    source: Path | bytes = path.read_bytes() if from_bytes else path
    whole = load_audio(source)

    assert is_streamable(source)
    assert num_samples_16k(source) == whole.numel()
    chunks = list(stream_audio(source, chunk_samples=7_000))
    assert len(chunks) == -(-whole.numel() // 7_000)
    assert all(c.numel() == 7_000 for c in chunks[:-1])
    torch.testing.assert_close(torch.cat(chunks), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(load_streamed(source), whole, atol=1e-6, rtol=0)


def _peak_numpy_bytes(path: Path) -> tuple[int, int]:
    """Samples streamed from ``path`` and the peak of Python/numpy memory
    (numpy reports its buffers to tracemalloc) while streaming them."""
    tracemalloc.start()
    try:
        total = sum(chunk.numel() for chunk in stream_audio(path))
        return total, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_flac_does_not_decode_it_whole(tmp_path: Path) -> None:
    """8 minutes of 44.1 kHz stereo FLAC peak like 1 minute (a 30 s read
    block, ~11 MB). Decoding it whole reads the file's bytes (~62 MB here)
    and resamples all 8 minutes at once, so the peak grows ~8x."""
    second = np.stack([tone(1.0, 44_100, seed=2), tone(1.0, 44_100, seed=3)], 1)
    paths = {}
    for minutes in (1, 8):
        paths[minutes] = tmp_path / f"{minutes}.flac"
        with soundfile.SoundFile(
            paths[minutes], "w", 44_100, 2, "PCM_16", format="FLAC"
        ) as out:
            for _ in range(minutes * 60):
                out.write(second)

    short_samples, short_peak = _peak_numpy_bytes(paths[1])
    long_samples, long_peak = _peak_numpy_bytes(paths[8])

    assert (short_samples, long_samples) == (60 * 16_000, 8 * 60 * 16_000)
    assert long_peak <= 1.25 * short_peak, (short_peak, long_peak)


def _flac_bytes() -> bytes:
    out = io.BytesIO()
    soundfile.write(out, tone(3.0, 44_100), 44_100, subtype="PCM_16", format="FLAC")
    return out.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: _flac_bytes()[: len(_flac_bytes()) // 2], id="cut_flac"),
        pytest.param(lambda: b"not audio at all\n" * 200, id="text"),
        pytest.param(lambda: b"", id="empty"),
    ],
)
def test_bad_files_fail_streaming_as_they_fail_whole(
    tmp_path: Path, content: object
) -> None:
    """Never a ``soundfile`` exception: the same ``AudioDecodeError`` (which
    the server answers with a 400) naming the file, from a path or bytes."""
    data: bytes = content()  # type: ignore[operator]
    path = tmp_path / "speech.flac"
    path.write_bytes(data)

    for source, name in ((path, str(path)), (data, f"<{len(data)} bytes>")):
        with pytest.raises(AudioDecodeError) as whole:
            load_audio(source)
        with pytest.raises(AudioDecodeError) as streamed:
            list(stream_audio(source))
        with pytest.raises(AudioDecodeError) as joined:
            load_streamed(source)
        assert whole.value.source == streamed.value.source == name
        assert joined.value.source == name


def test_a_cut_mp3_fails_where_the_stream_breaks_off(tmp_path: Path) -> None:
    """libsndfile reads a truncated MP3 without error, just fewer frames than
    its header states; the stream says so (as the whole decode refuses it)."""
    data = write_stereo(tmp_path / "a.mp3", "mp3", seconds=6.0).read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(AudioDecodeError):
        load_audio(cut)
    chunks = []
    with pytest.raises(AudioDecodeError, match=r"cut\.mp3.*ends after \d+ of"):
        for chunk in stream_audio(cut, chunk_samples=8_000):
            chunks.append(chunk)
    assert chunks  # what came before the break was streamed


def test_an_mp3_behind_an_id3_tag_streams(tmp_path: Path) -> None:
    """The Xing header is looked for after the ID3v2 tag (title, cover art)
    most MP3s start with; 2 kB of it hide the header from a naive search."""
    title = b"\x00A long recording"  # ISO-8859-1
    frame = b"TIT2" + len(title).to_bytes(4, "big") + b"\x00\x00" + title
    size = len(frame) + 2_000  # the tag's padding
    synchsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    tag = b"ID3\x03\x00\x00" + synchsafe + frame + bytes(2_000)
    mp3 = write_stereo(tmp_path / "a.mp3", "mp3").read_bytes()
    path = tmp_path / "tagged.mp3"
    path.write_bytes(tag + mp3)

    assert is_streamable(path)
    torch.testing.assert_close(
        torch.cat(list(stream_audio(path))), load_audio(path), atol=1e-6, rtol=0
    )


KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
"""MPEG-1 Layer III bit rates by header index."""


def without_length_header(mp3: bytes) -> bytes:
    """``mp3`` less its first frame, the Xing/Info header LAME writes (no
    audio in it): how encoders without such a header leave the file."""
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0  # a frame, no ID3 tag
    rate = (44_100, 48_000, 32_000)[(mp3[2] >> 2) & 3]
    length = 144_000 * KBPS[mp3[2] >> 4] // rate + ((mp3[2] >> 1) & 1)
    assert mp3[4:40].find(b"Xing") >= 0 or mp3[4:40].find(b"Info") >= 0
    assert mp3[length] == 0xFF and mp3[length + 1] & 0xE0 == 0xE0
    return mp3[length:]


@pytest.mark.parametrize("bitrate_mode", ["CONSTANT", "VARIABLE"])
def test_an_mp3_that_does_not_state_its_length_is_not_streamed(
    tmp_path: Path, bitrate_mode: str
) -> None:
    """libsndfile estimates such a file's length from its size and reads no
    further (a few frames too many at a constant bit rate: the stream would
    end early with an error; far too few at a variable one: audio lost), so
    it goes the whole-file way and fails or decodes exactly as that does
    (Debian's libsndfile 1.2.0 finds no frames in it through fairseq2's
    reader; soundfile's 1.2.2, if loaded first, counts them)."""
    encoded = io.BytesIO()
    stereo = np.stack([tone(6.0, 44_100, seed=1), tone(6.0, 44_100, freq=300.0)], 1)
    with soundfile.SoundFile(
        encoded,
        "w",
        44_100,
        2,
        format="MP3",
        bitrate_mode=bitrate_mode,
        compression_level=0.5,
    ) as out:
        out.write(stereo)
    assert soundfile.info(io.BytesIO(encoded.getvalue())).frames == len(stereo)
    path = tmp_path / "no_header.mp3"
    path.write_bytes(without_length_header(encoded.getvalue()))
    # The control: without the header, libsndfile's count is wrong: it
    # delivers fewer frames than it states, or states fewer than encoded.
    stated = soundfile.info(str(path)).frames
    delivered = len(soundfile.read(str(path), dtype="float32")[0])
    assert delivered < stated or stated < len(stereo), (stated, delivered)

    for source in (path, path.read_bytes()):
        assert not is_streamable(source)
        try:
            whole = load_audio(source)
        except AudioDecodeError as ex:
            with pytest.raises(AudioDecodeError, match=re.escape(ex.reason)):
                list(stream_audio(source))
            with pytest.raises(AudioDecodeError, match=re.escape(ex.reason)):
                load_streamed(source)
            assert num_samples_16k(source) is None
            continue
        assert num_samples_16k(source) == whole.numel()
        chunks = list(stream_audio(source, chunk_samples=7_000))
        torch.testing.assert_close(torch.cat(chunks), whole, atol=0, rtol=0)
        torch.testing.assert_close(load_streamed(source), whole, atol=0, rtol=0)


def test_what_libsndfile_cannot_open_is_not_streamable(tmp_path: Path) -> None:
    m4a = tmp_path / "speech.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + bytes(64))

    assert not is_streamable(m4a)
    assert not is_streamable(tmp_path / "missing.flac")
    assert not is_streamable(torch.zeros(16_000))
    assert num_samples_16k(m4a) is None
    with pytest.raises(AudioDecodeError, match="ffmpeg -i"):
        list(stream_audio(m4a))
    with pytest.raises(OSError):
        list(stream_audio(tmp_path / "missing.flac"))
