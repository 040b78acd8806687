"""The one usability check agrees with what the models and the LLM accept.

References are independent of :mod:`speechmapper_plugin.data.usability`: the
tiny projector's own forward pass (its output length, and the inputs it
refuses), per-element ``math.isfinite``, and ``collections.Counter`` and
``csv`` for the skip report.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fairseq2.nn import BatchLayout

from speechmapper_plugin.data.reasons import (
    EMPTY_TRANSCRIPT,
    TOO_LONG_AUDIO,
    TOO_LONG_FOR_BATCH,
    TOO_LONG_FOR_LLM,
    TOO_SHORT_AUDIO,
    TRANSCRIPT_TOO_LONG,
)
from speechmapper_plugin.data.usability import (
    Unusable,
    audio_length_problem,
    prompt_problem,
    speech_positions,
    transcript_problem,
    transcript_text_problem,
)
from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.input_checks import finite_rows, is_finite, sequence_fits
from speechmapper_plugin.llm.speech_prompt import (
    no_placeholder_problem,
    placeholder_problem,
)
from speechmapper_plugin.models.speechmapper import (
    SpeechMapperConfig,
    create_speechmapper_model,
    get_speechmapper_model_hub,
)


@pytest.fixture(scope="module")
def tiny() -> SpeechMapperConfig:
    config = get_speechmapper_model_hub().get_arch_config("tiny")
    return replace(config, max_input_frames=200)


def projector_output(config: SpeechMapperConfig, num_frames: int) -> int | None:
    """What the projector itself emits for ``num_frames`` pre-averaged frames,
    or ``None`` if it refuses the input."""
    torch.manual_seed(0)
    model = create_speechmapper_model(config).eval()
    seqs = torch.randn(1, num_frames, config.input_dim)
    try:
        with torch.inference_mode():
            _, layout = model(seqs, BatchLayout.of(seqs), pre_averaged=True)
    except ValueError:
        return None
    return int(layout.seq_lens[0])


def test_speech_positions_match_the_projector(tiny: SpeechMapperConfig) -> None:
    max_frames = tiny.max_input_frames // tiny.frame_averaging  # 100 averaged
    for num_frames in [*range(1, 30), 64, max_frames - 1, max_frames, max_frames + 1]:
        got = speech_positions(tiny, num_frames, pre_averaged=True)
        emitted = projector_output(tiny, num_frames)
        if emitted is None:
            assert isinstance(got, Unusable), num_frames
        else:
            assert got == emitted, num_frames

    short = speech_positions(tiny, 1, pre_averaged=True)
    assert isinstance(short, Unusable) and short.reason == TOO_SHORT_AUDIO
    assert "the projector needs at least" in short.detail

    long = speech_positions(tiny, max_frames + 1, pre_averaged=True)
    assert isinstance(long, Unusable) and long.reason == TOO_LONG_AUDIO
    assert f"`max_input_frames` ({tiny.max_input_frames})" in long.detail

    # Not pre-averaged: twice the frames give what the averaged ones give.
    assert speech_positions(tiny, 128, pre_averaged=False) == projector_output(tiny, 64)


def test_batch_budget(tiny: SpeechMapperConfig) -> None:
    assert isinstance(
        speech_positions(tiny, 50, pre_averaged=True, max_num_frames=50), int
    )
    over = speech_positions(tiny, 51, pre_averaged=True, max_num_frames=50)
    assert over == Unusable(
        TOO_LONG_FOR_BATCH, "too long for a batch: 51 frames > max_num_frames 50"
    )


def test_transcripts() -> None:
    assert transcript_text_problem(" a ") is None
    assert transcript_text_problem(" \t") == Unusable(
        EMPTY_TRANSCRIPT, "the transcript is empty"
    )
    assert transcript_problem(5, 5) is None
    assert transcript_problem(0, 5) == Unusable(
        EMPTY_TRANSCRIPT, "the transcript has no tokens"
    )
    too_long = transcript_problem(6, 5)
    assert too_long is not None and too_long.reason == TRANSCRIPT_TOO_LONG
    assert "6 tokens > 5 positions" in too_long.detail


def test_prompt_fit(tiny: SpeechMapperConfig) -> None:
    # Training: prompt and response fill the context exactly.
    assert sequence_fits(90, 100, response_len=10)
    assert not sequence_fits(91, 100, response_len=10)
    # Generation: the prompt must leave room for one new token.
    assert sequence_fits(99, 100) and not sequence_fits(100, 100)

    assert prompt_problem(tiny, 10, 80, 9, 100) is None
    full = prompt_problem(tiny, 10, 81, 9, 100)
    assert full is not None and full.reason == TOO_LONG_FOR_LLM
    assert "100 positions (81 speech embeddings)" in full.detail
    assert "no room to generate" in full.detail

    training = prompt_problem(tiny, 10, 81, 9, 105, response_len=6)
    assert training is not None and training.reason == TOO_LONG_FOR_LLM
    assert "106 positions" in training.detail and "max_seq_len 105" in training.detail


def test_audio_length() -> None:
    assert audio_length_problem(560, 560, gives="x", needed_by="y needs") is None
    short = audio_length_problem(
        559, 560, gives="no frame", needed_by="the encoder needs"
    )
    assert short is not None and short.reason == TOO_SHORT_AUDIO
    assert short.detail == (
        "0.035 s of audio gives no frame: the encoder needs at least 0.035 s (560 samples at 16 kHz)"
    )


def test_finiteness_against_math_isfinite() -> None:
    values = torch.randn(4, 5, 3)
    values[1, 2, 0] = float("nan")
    values[2, 4, 1] = float("inf")  # in row 2's padding when lens[2] == 4
    values[3, 0, 2] = -float("inf")

    def row_ok(row: int, length: int) -> bool:
        return all(math.isfinite(v) for v in values[row, :length].flatten().tolist())

    assert finite_rows(values).tolist() == [row_ok(r, 5) for r in range(4)]
    lens = [5, 5, 4, 1]
    assert finite_rows(values, lens).tolist() == [
        row_ok(r, n) for r, n in enumerate(lens)
    ]
    assert finite_rows(values[:, :, 0]).tolist() == [
        all(math.isfinite(v) for v in values[r, :, 0].tolist()) for r in range(4)
    ]
    assert not is_finite(values) and is_finite(values[0])


def test_placeholder_checks() -> None:
    assert placeholder_problem("Say it.\n<speech>", "x") is None
    for text, count in [("no speech", 0), ("<speech><speech>", 2)]:
        problem = placeholder_problem(text, "`prompt.instruction`")
        assert problem == (
            f"`prompt.instruction` must contain the placeholder <speech> exactly once (where the speech goes), but contains it {count} times: {text!r}."
        )
    assert no_placeholder_problem("Be brief.", "The system prompt") is None
    assert no_placeholder_problem("<speech>", "The system prompt") == (
        "The system prompt must not contain the speech placeholder <speech>: '<speech>'."
    )


def test_skip_report_counts_codes(tmp_path: Path) -> None:
    report = SkipReport("dev", num_examples=6)
    skips = [
        ("a", Unusable(TOO_SHORT_AUDIO, "short: 1 frame")),
        ("b", Unusable(TRANSCRIPT_TOO_LONG, "9 tokens > 2 positions")),
        ("c", Unusable(TOO_SHORT_AUDIO, "short: 2 frames")),
    ]
    for example_id, problem in skips:
        report.skip(example_id, problem)

    expected = Counter(p.reason for _, p in skips)
    assert report.counts() == dict(expected)
    assert report.num_kept == 3
    assert report.summary() == (
        "dev: kept 3 of 6 examples; skipped 2 too_short_audio, 1 transcript_too_long."
    )

    path = tmp_path / "skipped" / "dev.tsv"
    report.write_tsv(path)
    with path.open(newline="") as fp:
        rows = list(csv.reader(fp, delimiter="\t"))
    assert rows == [
        ["line", "id", "reason", "detail"],
        *(["0", i, p.reason, p.detail] for i, p in skips),
    ]
