"""Synthesised speech corpora (espeak-ng + sox) with an audio manifest.

The only speech that can be made offline: formant synthesis is far from real
speech, but it is real 16 kHz audio of known transcripts, read through the same
manifest, decoding and feature-extraction code as any corpus. Voices, speeds
and pitches vary so that a model must generalise across speakers; a voice kept
out of training (:data:`HELDOUT_VOICES`) tests that it does.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
voices against three speeds give fifteen voice/speed pairings. (``en-gb+m3``
is plain ``en-gb``: that voice ignores variants; kept so that existing corpora
stay the same.)"""

SLOW_WORDS_PER_MINUTE: Final = (105, 115, 110)
"""Slow speech: at ~2 words/s a transcript of about ten tokens spans ~25
positions of a projector that emits 6.25 per second, so every token fits."""

DEFAULT_PITCH: Final = 50
"""espeak-ng's own default pitch (0-99)."""

TRAIN_VOICES: Final = (
    "en-us",
    "en-us+f3",
    "en+m3",
    "en-us+f5",
    "en-gb-x-rp+m7",
    "en-029+m2",
    "en-us-nyc+m5",
    "en-gb-x-gbcwmd+f1",
    "en-gb-x-gbclan+m4",
    "en+f4",
    "en-us+m6",
)
"""The voices of the training split: seven accents and ten variants
(formants, breathiness). British English is ``en`` here: ``en-gb`` ignores a
``+variant`` (every ``en-gb+...`` is plain ``en-gb``). Eleven voices, coprime
with the five speeds and seven pitches below, give all 385 combinations."""

DEV_VOICES: Final = ("en-us-nyc+f4",)
"""The voice of the development split: not a training voice either, so that
validating and tuning on dev measures what the test voice will (a new voice)
without looking at the test split."""

HELDOUT_VOICES: Final = ("en-gb-scotland+f2",)
"""The voice of the test split only: an accent (Scottish English) and a
variant (``f2``) that no training voice has."""

VARIED_WORDS_PER_MINUTE: Final = (130, 140, 150, 160, 170)
"""Speeds of the varied corpora. A ten-word sentence at 150 words a minute
lasts about four seconds: 25 positions at 6.25 per second for about twelve
tokens (the quickstart's transcripts), so tokens and pads both fit."""

VARIED_PITCHES: Final = (30, 38, 44, 50, 56, 62, 70)
"""Pitches of the varied corpora (espeak-ng's 0-99 scale)."""

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
    pitch: int = DEFAULT_PITCH,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Speak ``text`` into ``path``: espeak-ng piped into sox, to 16-bit mono
    at ``sample_rate`` (with gain guarding against clipping; repeatable: the
    same text gives the same samples, dither included)."""
    if not has_speech_synthesis():
        raise SpeechSynthesisError(
            f"espeak-ng and sox are needed to synthesise speech. {INSTALL_HINT}"
        )
    if not text.strip():
        raise SpeechSynthesisError(f"Cannot synthesise empty text into {path}.")
    if not 0 <= pitch <= 99:
        raise SpeechSynthesisError(
            f"`pitch` must be in [0, 99] (espeak-ng's scale), but is {pitch}."
        )
    if words_per_minute < 80:
        raise SpeechSynthesisError(
            f"`words_per_minute` must be at least 80 (espeak-ng's minimum), but is {words_per_minute}."
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    espeak = [
        "espeak-ng",
        "-v",
        voice,
        "-s",
        str(words_per_minute),
        "-p",
        str(pitch),
        "--stdout",
        text,
    ]
    sox = [
        "sox",
        "-R",  # repeatable: sox seeds its dither randomly otherwise
        "-q",
        "-G",
        "-t",
        "wav",
        "-",
        "-r",
        str(sample_rate),
        "-b",
        "16",
        "-c",
        "1",
        str(path),
    ]
    speaker = subprocess.run(espeak, check=False, capture_output=True)
    if speaker.returncode != 0 or not speaker.stdout:
        _fail(espeak, speaker.returncode, speaker.stderr)
    converter = subprocess.run(
        sox, input=speaker.stdout, check=False, capture_output=True
    )
    if converter.returncode != 0:
        _fail(sox, converter.returncode, converter.stderr)
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
    pitches: Sequence[int] = (DEFAULT_PITCH,),
    sample_rate: int = SAMPLE_RATE,
    num_workers: int = 1,
) -> Path:
    """Speak every sentence into ``directory/audio/`` and write a TSV manifest
    (``id, audio, num_samples, text, lang``; audio paths relative to
    ``directory``).

    Utterance ``i`` takes ``voices[i % len(voices)]``, the speed
    ``words_per_minute[i % ...]`` and the pitch ``pitches[i % ...]``:
    pairwise coprime lengths give every combination. The audio is the same
    whatever ``num_workers`` (the parallel espeak-ng/sox pipelines; each
    utterance is a separate, repeatable process pair).

    :returns: The manifest path.
    """
    if not sentences:
        raise ValueError("A corpus needs at least one sentence.")
    for name, values in (
        ("voices", voices),
        ("words_per_minute", words_per_minute),
        ("pitches", pitches),
    ):
        if not values:
            raise ValueError(f"`{name}` must not be empty.")
    if num_workers < 1:
        raise ValueError(f"`num_workers` must be at least 1, but is {num_workers}.")
    for i, sentence in enumerate(sentences):
        if "\t" in sentence or "\n" in sentence:
            raise ValueError(f"Sentence {i} contains a tab or a newline: {sentence!r}")

    def speak(i: int) -> str:
        utt_id = f"{id_prefix}{i:05d}"
        rel = Path("audio") / f"{utt_id}.wav"
        target = synthesize_speech(
            directory / rel,
            sentences[i],
            voice=voices[i % len(voices)],
            words_per_minute=words_per_minute[i % len(words_per_minute)],
            pitch=pitches[i % len(pitches)],
            sample_rate=sample_rate,
        )
        values = (
            utt_id,
            rel.as_posix(),
            str(num_wav_samples(target)),
            sentences[i],
            lang,
        )
        return "\t".join(values)

    # Threads suffice: each one waits on its subprocesses.
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        rows = list(pool.map(speak, range(len(sentences))))

    manifest = directory / manifest_name
    manifest.write_text(
        "\n".join(["\t".join(MANIFEST_COLUMNS), *rows]) + "\n", encoding="utf-8"
    )
    return manifest


def _fail(command: list[str], returncode: int, stderr: bytes) -> None:
    message = stderr.decode(errors="replace").strip() or "no output"
    raise SpeechSynthesisError(
        f"`{' '.join(command[:3])} ...` failed with exit code {returncode}: {message}"
    )
