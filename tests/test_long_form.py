"""Long-form inference: streaming, segmenting (fixed windows, Silero VAD),
cutting, and the pipeline's answers per segment, joined."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.audio.segments import (
    FixedWindows,
    Segment,
    SegmenterConfig,
    VadSegmenter,
    cut,
)
from speechmapper_plugin.audio.stream import is_streamable, stream_audio
from speechmapper_plugin.speech_llm import (
    SkippedInput,
    SpeechMapperPipeline,
    SpeechTooLongError,
)
from speechmapper_plugin.speech_llm.long_form import longest_segment, run_long_form
from tests.support.audio import (
    VOICES,
    has_espeak,
    synthesize_speech,
    tone,
    write_wav,
)

RATE = 16_000


@pytest.mark.parametrize("rate", [16_000, 44_100, 8_000])
def test_streamed_chunks_join_to_the_decoded_audio(tmp_path: Path, rate: int) -> None:
    stereo = np.stack([tone(3.3, rate, seed=1), tone(3.3, rate, freq=300.0)], 1)
    path = write_wav(tmp_path / "a.wav", stereo, rate)
    assert is_streamable(path)

    chunks = list(stream_audio(path, chunk_samples=7_000))
    assert all(c.numel() == 7_000 for c in chunks[:-1])
    torch.testing.assert_close(torch.cat(chunks), load_audio(path), atol=1e-6, rtol=0)


def test_fixed_windows_cover_the_audio_exactly() -> None:
    chunks = [torch.zeros(n) for n in (7, 7, 50, 1, 35)]  # 100 samples
    segments = list(FixedWindows().segments(chunks, max_samples=30))
    assert segments == [
        Segment(0, 30),
        Segment(30, 60),
        Segment(60, 90),
        Segment(90, 100),
    ]

    audio = torch.arange(100, dtype=torch.float32)
    pieces = list(cut(stream_audio(audio, chunk_samples=13), segments))
    torch.testing.assert_close(torch.cat(pieces), audio)
    assert [p.numel() for p in pieces] == [30, 30, 30, 10]


def test_cut_takes_gaps_out() -> None:
    audio = torch.arange(50, dtype=torch.float32)
    pieces = list(
        cut(stream_audio(audio, chunk_samples=6), [Segment(3, 9), Segment(20, 41)])
    )
    assert pieces[0].tolist() == list(range(3, 9))
    assert pieces[1].tolist() == list(range(20, 41))


TEXTS = [
    "The cat sat on the mat and looked outside.",
    "Tomorrow we will travel to the mountains by train.",
    "Please send me the report before noon.",
    "Music fills the hall every Sunday evening.",
    "Seven children played football in the park.",
    "The river is wide and the water is cold.",
]


def build_recording(root: Path, repeats: int, seed: int) -> tuple[Path, list[Segment]]:
    """``TEXTS`` spoken ``repeats`` times (a voice per round) with 0.7-2 s
    pauses, and where each utterance's speech starts and ends (the
    synthesised file's leading and trailing silence trimmed)."""
    rng = np.random.default_rng(seed)
    spoken: dict[tuple[str, str], np.ndarray] = {}
    parts: list[np.ndarray] = []
    truth: list[Segment] = []
    position = 0
    for i, text in enumerate(TEXTS * repeats):
        voice = VOICES[i // len(TEXTS) % len(VOICES)]
        if (text, voice) not in spoken:
            wav = root / f"u{len(spoken)}.wav"
            speech = load_audio(synthesize_speech(wav, text, voice=voice)).numpy()
            loud = np.flatnonzero(np.abs(speech) > 0.01)
            spoken[text, voice] = speech[loud[0] : loud[-1] + 1]
        speech = spoken[text, voice]
        pause = int(rng.uniform(0.7, 2.0) * RATE)
        parts += [np.zeros(pause, np.float32), speech]
        truth.append(Segment(position + pause, position + pause + speech.size))
        position += pause + speech.size
    parts.append(np.zeros(RATE, np.float32))
    return write_wav(root / "recording.wav", np.concatenate(parts)), truth


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Segment]]:
    """About a minute of espeak utterances with pauses (for the pipeline)."""
    if not has_espeak():
        pytest.skip("needs espeak-ng and sox")
    return build_recording(tmp_path_factory.mktemp("long_form"), 3, seed=0)


@pytest.fixture(scope="module")
def three_minutes(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Segment]]:
    """About three minutes of espeak utterances (four voices) with pauses."""
    if not has_espeak():
        pytest.skip("needs espeak-ng and sox")
    return build_recording(tmp_path_factory.mktemp("long_form_3min"), 9, seed=1)


@pytest.mark.slow  # 3 min of Silero VAD: 8.5 s with setup (quiet), 40 s (busy 2 cores)
def test_vad_regions_fall_on_the_utterances(
    three_minutes: tuple[Path, list[Segment]],
) -> None:
    path, truth = three_minutes
    assert truth[-1].end > 170 * RATE  # the three minutes
    regions = list(VadSegmenter().speech_regions(stream_audio(path)))

    assert len(regions) == len(truth)
    for region, utterance in zip(regions, truth, strict=True):
        assert abs(region.start_seconds - utterance.start_seconds) <= 0.3
        assert abs(region.end_seconds - utterance.end_seconds) <= 0.3


def test_vad_segments_join_whole_utterances_up_to_the_maximum(
    recording: tuple[Path, list[Segment]],
) -> None:
    path, truth = recording
    max_samples = 10 * RATE
    segments = list(
        VadSegmenter().segments(stream_audio(path), max_samples=max_samples)
    )

    assert all(s.num_samples <= max_samples for s in segments)
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:], strict=False))
    # Every utterance lies inside exactly one segment (none is cut), and a
    # segment holds more than one where they fit (merged).
    for utterance in truth:
        holders = [
            s
            for s in segments
            if s.start - 0.3 * RATE <= utterance.start
            and utterance.end <= s.end + 0.3 * RATE
        ]
        assert len(holders) == 1
    assert len(truth) / 3 < len(segments) < len(truth)


def test_long_form_equals_each_segment_decoded_alone(
    pipeline: SpeechMapperPipeline, tmp_path: Path
) -> None:
    audio = np.concatenate(
        [tone(2.0, freq=f, seed=i) for i, f in enumerate((150.0, 260.0, 330.0))]
        + [tone(0.2, seed=9)]  # a tail too short for the projector
    )
    path = write_wav(tmp_path / "long.wav", audio)
    instruction = "Transcribe the audio.\n<speech>"

    result = run_long_form(
        pipeline,
        path,
        instruction,
        segmenter=SegmenterConfig(kind="fixed", max_seconds=1.5),
        batch_size=3,
        chunk_samples=5_000,
    )

    waveform = load_audio(path)
    window = int(1.5 * RATE)
    starts = range(0, waveform.numel(), window)
    assert [(s.start, s.end) for s in result.segments] == [
        (a / RATE, min(a + window, waveform.numel()) / RATE) for a in starts
    ]
    alone = [
        pipeline.run(waveform[a : a + window], instruction, on_error="skip")[0]
        for a in starts
    ]
    assert isinstance(alone[-1], SkippedInput)
    assert isinstance(result.segments[-1].result, SkippedInput)
    assert result.skipped == 1
    expected = [r.token_ids for r in alone if not isinstance(r, SkippedInput)]
    got = [
        s.result.token_ids
        for s in result.segments
        if not isinstance(s.result, SkippedInput)
    ]
    assert got == expected
    assert result.text == " ".join(
        r.text for r in alone if not isinstance(r, SkippedInput) and r.text
    )


def test_segments_are_lowered_to_what_the_models_take(
    pipeline: SpeechMapperPipeline,
) -> None:
    instruction = "Transcribe the audio.\n<speech>"
    longest = longest_segment(pipeline, instruction, max_seconds=100_000.0)
    pipeline.check_audio(longest, instruction)
    with pytest.raises(SpeechTooLongError):
        pipeline.check_audio(longest + 1, instruction)
    assert longest_segment(pipeline, instruction, max_seconds=2.0) == 2 * RATE


_MEASURE = """
import json, sys
from speechmapper_plugin.audio.segments import FixedWindows, cut
from speechmapper_plugin.audio.stream import stream_audio


def peak_kb():
    # VmHWM: this process's peak resident memory since the last reset.
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))


peaks = []
for path in sys.argv[1:]:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current resident memory
    segments = list(FixedWindows().segments(stream_audio(path), max_samples=480000))
    total = sum(piece.numel() for piece in cut(stream_audio(path), segments))
    peaks.append({"samples": total, "peak_kb": peak_kb()})
print(json.dumps(peaks))
"""


def test_memory_is_flat_in_the_recordings_length(tmp_path: Path) -> None:
    """Streaming, fixed-window segmenting and cutting a 20-minute recording
    peaks within 10 % of a 2-minute one, in one fresh process (decoding it
    whole would add 77 MB of float32 and its 38 MB of int16 to ~0.5 GB)."""
    paths = []
    for minutes in (2, 20):
        paths.append(tmp_path / f"{minutes}.wav")
        write_wav(paths[-1], np.tile(tone(1.0, seed=minutes), minutes * 60))
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    short, long = json.loads(run.stdout.strip().splitlines()[-1])
    assert short["samples"] == 2 * 60 * RATE
    assert long["samples"] == 20 * 60 * RATE
    assert long["peak_kb"] <= 1.10 * short["peak_kb"], (short, long)


def test_vad_long_form_equals_each_vad_segment_decoded_alone(
    pipeline: SpeechMapperPipeline, recording: tuple[Path, list[Segment]]
) -> None:
    path, _ = recording
    instruction = "Transcribe the audio.\n<speech>"
    config = SegmenterConfig(kind="vad", max_seconds=10.0)

    result = run_long_form(pipeline, path, instruction, segmenter=config)

    segments = list(
        VadSegmenter(config).segments(stream_audio(path), max_samples=10 * RATE)
    )
    assert [(s.start, s.end) for s in result.segments] == [
        (s.start_seconds, s.end_seconds) for s in segments
    ]
    waveform = load_audio(path)
    alone = pipeline.run([waveform[s.start : s.end] for s in segments], instruction)
    assert [s.result.token_ids for s in result.segments] == [  # type: ignore[union-attr]
        r.token_ids for r in alone
    ]
    assert result.skipped == 0
