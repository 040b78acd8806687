"""Synthesised speech: voices, speeds and pitches, the held-out voice, and
parallel synthesis that gives the same audio as serial synthesis."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechmapper_plugin.data.manifest_validation import validate_manifest
from speechmapper_plugin.tiny_assets import templated_sentences
from speechmapper_plugin.tiny_assets.speech import (
    DEV_VOICES,
    HELDOUT_VOICES,
    TRAIN_VOICES,
    VARIED_PITCHES,
    VARIED_WORDS_PER_MINUTE,
    SpeechSynthesisError,
    has_speech_synthesis,
    num_wav_samples,
    synthesize_corpus,
    synthesize_speech,
)

pytestmark = pytest.mark.skipif(
    not has_speech_synthesis(), reason="needs espeak-ng and sox"
)

SENTENCE = "The old dog saw a bird near the river."


def _rows(manifest: Path) -> list[list[str]]:
    return [line.split("\t") for line in manifest.read_text().splitlines()[1:]]


def test_parallel_synthesis_equals_serial(tmp_path: Path) -> None:
    sentences = templated_sentences(7, seed=3)
    kwargs = {
        "voices": TRAIN_VOICES,
        "words_per_minute": VARIED_WORDS_PER_MINUTE,
        "pitches": VARIED_PITCHES,
    }
    serial = synthesize_corpus(tmp_path / "serial", sentences, num_workers=1, **kwargs)  # type: ignore[arg-type]
    parallel = synthesize_corpus(
        tmp_path / "parallel",
        sentences,
        num_workers=2,
        **kwargs,  # type: ignore[arg-type]
    )

    assert serial.read_text() == parallel.read_text()
    for row in _rows(serial):
        a = (tmp_path / "serial" / row[1]).read_bytes()
        b = (tmp_path / "parallel" / row[1]).read_bytes()
        assert a == b, row[0]


def test_utterance_i_takes_the_ith_voice_speed_and_pitch(tmp_path: Path) -> None:
    sentences = templated_sentences(4, seed=5)
    voices, speeds, pitches = TRAIN_VOICES[:2], (130, 170, 150), (30, 70)
    manifest = synthesize_corpus(
        tmp_path / "corpus",
        sentences,
        voices=voices,
        words_per_minute=speeds,
        pitches=pitches,
        num_workers=2,
    )

    for i, row in enumerate(_rows(manifest)):
        reference = synthesize_speech(
            tmp_path / f"ref{i}.wav",
            sentences[i],
            voice=voices[i % 2],
            words_per_minute=speeds[i % 3],
            pitch=pitches[i % 2],
        )
        assert (tmp_path / "corpus" / row[1]).read_bytes() == reference.read_bytes()
        assert int(row[2]) == num_wav_samples(reference)


def test_pitch_and_speed_change_the_audio(tmp_path: Path) -> None:
    low = synthesize_speech(tmp_path / "low.wav", SENTENCE, pitch=30)
    high = synthesize_speech(tmp_path / "high.wav", SENTENCE, pitch=70)
    assert low.read_bytes() != high.read_bytes()

    slow = synthesize_speech(tmp_path / "slow.wav", SENTENCE, words_per_minute=110)
    fast = synthesize_speech(tmp_path / "fast.wav", SENTENCE, words_per_minute=170)
    assert num_wav_samples(fast) < 0.8 * num_wav_samples(slow)


def test_every_shipped_voice_speaks_and_dev_and_test_voices_are_unseen(
    tmp_path: Path,
) -> None:
    assert not set(HELDOUT_VOICES) & set(TRAIN_VOICES)
    assert not set(DEV_VOICES) & set(TRAIN_VOICES)
    assert not set(DEV_VOICES) & set(HELDOUT_VOICES)
    # The test voice's accent is one no training voice speaks.
    accents = {voice.split("+")[0] for voice in TRAIN_VOICES}
    assert not {voice.split("+")[0] for voice in HELDOUT_VOICES} & accents

    audio = {
        voice: synthesize_speech(
            tmp_path / f"{i}.wav", SENTENCE, voice=voice
        ).read_bytes()
        for i, voice in enumerate((*TRAIN_VOICES, *DEV_VOICES, *HELDOUT_VOICES))
    }
    # Every voice sounds different (an unknown variant would fall back silently).
    assert len(set(audio.values())) == len(audio)


def test_varied_speech_is_valid_and_within_the_speed_range(tmp_path: Path) -> None:
    sentences = templated_sentences(5, seed=1)
    manifest = synthesize_corpus(
        tmp_path,
        sentences,
        voices=HELDOUT_VOICES,
        words_per_minute=VARIED_WORDS_PER_MINUTE,
        pitches=VARIED_PITCHES,
        num_workers=2,
    )
    report = validate_manifest(manifest)
    assert report.ok, report.summary_lines()
    for row in _rows(manifest):
        seconds_per_word = int(row[2]) / 16_000 / len(row[3].split())
        # 130-170 words a minute is 0.35-0.46 s a word, plus pauses.
        assert 0.25 < seconds_per_word < 0.65, row


def test_bad_voice_pitch_speed_or_workers_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpeechSynthesisError, match="exit code"):
        synthesize_speech(tmp_path / "x.wav", SENTENCE, voice="xx-nonexistent")
    with pytest.raises(SpeechSynthesisError, match="pitch"):
        synthesize_speech(tmp_path / "x.wav", SENTENCE, pitch=100)
    with pytest.raises(SpeechSynthesisError, match="words_per_minute"):
        synthesize_speech(tmp_path / "x.wav", SENTENCE, words_per_minute=40)
    with pytest.raises(ValueError, match="num_workers"):
        synthesize_corpus(tmp_path, [SENTENCE], num_workers=0)
    with pytest.raises(ValueError, match="pitches"):
        synthesize_corpus(tmp_path, [SENTENCE], pitches=())
    with pytest.raises(SpeechSynthesisError, match="exit code"):
        synthesize_corpus(tmp_path, [SENTENCE], voices=["xx-nonexistent"])
