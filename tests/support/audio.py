"""Audio files for tests: synthetic speech (espeak-ng + sox), tones, and broken files.

``synthesize_corpus`` builds a small speech corpus with a manifest that every
end-to-end test can reuse; the ``write_*`` helpers make the bad inputs the data
pipeline must survive (corrupt, empty, too short, NaN, other sample rates,
stereo).
"""

from __future__ import annotations

import json
import struct
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechmapper_plugin import tiny_assets

SAMPLE_RATE = 16_000

DEFAULT_SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "speech features are extracted once and cached on disk",
    "a projector maps speech into the embedding space of a language model",
    "please transcribe what was said in this recording",
    "seven small boats sailed across the quiet harbour at dawn",
    "the weather today is cold and windy with light rain",
)

VOICES = ("en-us", "en-us+f3", "en-gb+m3", "en-us+f5")


def has_espeak() -> bool:
    return tiny_assets.has_speech_synthesis()


def tone(
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    freq: float = 220.0,
    seed: int = 0,
) -> np.ndarray:
    """A harmonic tone with a little noise, float32 in [-1, 1]: speech-like enough
    for an encoder, never silent (so fbank statistics are well defined)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    signal = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    signal = 0.3 * signal / 2.3 + 0.02 * rng.standard_normal(t.shape)
    return signal.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM WAV; ``samples`` is ``[n]`` (mono) or ``[n, channels]``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = samples if samples.ndim == 2 else samples[:, None]
    pcm = np.clip(np.round(data * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as fp:
        fp.setnchannels(data.shape[1])
        fp.setsampwidth(2)
        fp.setframerate(sample_rate)
        fp.writeframes(pcm.tobytes())
    return path


def write_float_wav(
    path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> Path:
    """Mono 32-bit IEEE-float WAV, which (unlike PCM) can hold NaN and inf."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, sample_rate, sample_rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def write_tone(
    path: Path,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    *,
    channels: int = 1,
    seed: int = 0,
) -> Path:
    mono = tone(seconds, sample_rate, seed=seed)
    if channels == 1:
        return write_wav(path, mono, sample_rate)
    # Different content per channel, so a downmix is observable.
    stacked = np.stack([mono * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    return write_wav(path, stacked, sample_rate)


def write_corrupt(path: Path, *, seed: int = 0) -> Path:
    """A WAV header followed by garbage, truncated: not decodable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    path.write_bytes(b"RIFF\x24\x80\x00\x00WAVEfmt " + rng.bytes(64))
    return path


def write_empty(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_too_short(path: Path, num_samples: int = 300) -> Path:
    """Shorter than the 560 samples (16 kHz) the encoder needs for one frame."""
    return write_wav(path, tone(num_samples / SAMPLE_RATE), SAMPLE_RATE)


def write_nan_audio(path: Path, seconds: float = 1.0) -> Path:
    samples = tone(seconds)
    samples[len(samples) // 2] = np.nan
    return write_float_wav(path, samples)


def synthesize_speech(
    path: Path,
    text: str,
    *,
    voice: str = "en-us",
    speed: int = 160,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """espeak-ng speech, resampled by sox to ``sample_rate`` (16-bit mono WAV)."""
    return tiny_assets.synthesize_speech(
        path, text, voice=voice, words_per_minute=speed, sample_rate=sample_rate
    )


def num_wav_samples(path: Path) -> int:
    with wave.open(str(path), "rb") as fp:
        return fp.getnframes()


def write_manifest(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    """A ``.tsv`` (header from the first row's keys) or ``.jsonl`` manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path
    columns = list(rows[0])
    lines = ["\t".join(columns)]
    lines += [
        "\t".join("" if r.get(c) is None else str(r[c]) for c in columns) for r in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def synthesize_corpus(
    directory: Path,
    sentences: Sequence[str] = DEFAULT_SENTENCES,
    *,
    manifest_name: str = "train.tsv",
    lang: str = "en",
    sample_rate: int = SAMPLE_RATE,
    speed: int = 160,
) -> Path:
    """Speak every sentence (rotating voices) into ``directory/audio/`` and
    write a manifest (``id, audio, num_samples, text, lang``; paths relative
    to ``directory``). Needs espeak-ng and sox (``make setup`` installs them).

    :param speed: words per minute; slower speech gives the projector more
        output positions per token.

    :returns: The manifest path.
    """
    rows = []
    for i, sentence in enumerate(sentences):
        rel = Path("audio") / f"utt{i:05d}.wav"
        target = directory / rel
        synthesize_speech(
            target,
            sentence,
            voice=VOICES[i % len(VOICES)],
            speed=speed,
            sample_rate=sample_rate,
        )
        rows.append(
            {
                "id": f"utt{i:05d}",
                "audio": rel.as_posix(),
                "num_samples": num_wav_samples(target),
                "text": sentence,
                "lang": lang,
            }
        )
    return write_manifest(directory / manifest_name, rows)
