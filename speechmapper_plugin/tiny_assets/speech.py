"""Synthesised speech corpora (espeak-ng + sox) with an audio manifest.

The only speech that can be made offline: formant synthesis is far from real
speech, but it is real 16 kHz audio of known transcripts, read through the same
manifest, decoding and feature-extraction code as any corpus.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Final

SAMPLE_RATE: Final = 16_000

VOICES: Final = (
    "en-us",
    "en-us+f3",
    "en-gb+m3",
    "en-us+f5",
    "en-gb-x-rp+m7",
)
"""espeak-ng voices (language + variant) that utterances rotate through; five
voices against three speeds give fifteen voice/speed pairings."""

SLOW_WORDS_PER_MINUTE: Final = (105, 115, 110)
"""Slow speech: at ~2 words/s a transcript of about ten tokens spans ~25
positions of a projector that emits 6.25 per second, so every token fits."""

MANIFEST_COLUMNS: Final = ("id", "audio", "num_samples", "text", "lang")

INSTALL_HINT: Final = (
    "Install them with `bash scripts/install_system_packages.sh` (or `make setup`), "
    "or `sudo apt-get install espeak-ng sox`."
)


class SpeechSynthesisError(RuntimeError):
    """espeak-ng or sox is missing or failed."""


def has_speech_synthesis() -> bool:
    """Whether ``espeak-ng`` and ``sox`` are on ``PATH``."""
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def synthesize_speech(
    path: Path,
    text: str,
    *,
    voice: str = VOICES[0],
    words_per_minute: int = SLOW_WORDS_PER_MINUTE[0],
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Speak ``text`` into ``path``: espeak-ng, then sox to 16-bit mono at
    ``sample_rate`` (with gain guarding against clipping; repeatable: the same
    text gives the same samples, dither included)."""
    if not has_speech_synthesis():
        raise SpeechSynthesisError(
            f"espeak-ng and sox are needed to synthesise speech. {INSTALL_HINT}"
        )
    if not text.strip():
        raise SpeechSynthesisError(f"Cannot synthesise empty text into {path}.")

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        _run(
            [
                "espeak-ng",
                "-v",
                voice,
                "-s",
                str(words_per_minute),
                "-w",
                str(raw),
                text,
            ]
        )
        _run(
            [
                "sox",
                "-R",  # repeatable: sox seeds its dither randomly otherwise
                "-q",
                "-G",
                str(raw),
                "-r",
                str(sample_rate),
                "-b",
                "16",
                "-c",
                "1",
                str(path),
            ]
        )
    return path


def num_wav_samples(path: Path) -> int:
    with wave.open(str(path), "rb") as fp:
        return fp.getnframes()


def synthesize_corpus(
    directory: Path,
    sentences: Sequence[str],
    *,
    manifest_name: str = "train.tsv",
    id_prefix: str = "utt",
    lang: str = "en",
    voices: Sequence[str] = VOICES,
    words_per_minute: Sequence[int] = SLOW_WORDS_PER_MINUTE,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Speak every sentence into ``directory/audio/`` (voices and speeds
    rotate) and write a TSV manifest (``id, audio, num_samples, text, lang``;
    audio paths relative to ``directory``).

    :returns: The manifest path.
    """
    if not sentences:
        raise ValueError("A corpus needs at least one sentence.")

    lines = ["\t".join(MANIFEST_COLUMNS)]
    for i, sentence in enumerate(sentences):
        if "\t" in sentence or "\n" in sentence:
            raise ValueError(f"Sentence {i} contains a tab or a newline: {sentence!r}")

        utt_id = f"{id_prefix}{i:05d}"
        rel = Path("audio") / f"{utt_id}.wav"
        target = synthesize_speech(
            directory / rel,
            sentence,
            voice=voices[i % len(voices)],
            words_per_minute=words_per_minute[i % len(words_per_minute)],
            sample_rate=sample_rate,
        )
        values = (utt_id, rel.as_posix(), str(num_wav_samples(target)), sentence, lang)
        lines.append("\t".join(values))

    manifest = directory / manifest_name
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as ex:
        raise SpeechSynthesisError(
            f"`{' '.join(command[:3])} ...` failed with exit code {ex.returncode}: {ex.stderr.strip()}"
        ) from None
