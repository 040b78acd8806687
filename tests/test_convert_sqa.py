"""LibriSQA and Spoken-SQuAD converters on miniature copies of their real layouts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from speechmapper_plugin.audio import decode_audio
from speechmapper_plugin.data.convert import (
    ConvertError,
    convert_librisqa,
    convert_spoken_squad,
    split_options,
)
from speechmapper_plugin.data.convert.__main__ import main
from speechmapper_plugin.data.convert.librisqa import OPTIONS_UNPARSED
from speechmapper_plugin.data.instructions import read_instructions
from speechmapper_plugin.data.reasons import MALFORMED_ROW, MISSING_FILE
from speechmapper_plugin.evaluation import score_texts
from speechmapper_plugin.evaluation.judge import JudgeItem
from tests.support.audio import write_tone
from tests.support.cards import SessionCards
from tests.support.scripted_judge import scripted_judge


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    for utt, seed in (("1089-134686-0000", 0), ("1089-134686-0001", 1)):
        wav = write_tone(root / "test-clean/1089/134686" / f"{utt}.wav", 1.0, seed=seed)
        subprocess.run(["sox", str(wav), str(wav.with_suffix(".flac"))], check=True)
        wav.unlink()
    return root


def test_librisqa_part_one_open_questions(librispeech: Path, tmp_path: Path) -> None:
    data = [
        {
            # The authors' own absolute path: found again by utterance id.
            "speech_path": "/home/someone/LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac",
            "question": "What did he hope for?",
            "answer": "He hoped there would be stew for dinner.",
            "text": "HE HOPED THERE WOULD BE STEW FOR DINNER",
            "duration": 1.0,
        },
        {
            "speech_path": "test-clean/1089/134686/1089-134686-0001.flac",
            "question": "What was he counselled?",
            "answer": "To stuff it into him.",
            "text": "STUFF IT INTO YOU",
            "duration": 1.0,
        },
        {
            "speech_path": "test-clean/1089/134686/1089-134686-0099.flac",
            "question": "Missing audio?",
            "answer": "Yes.",
        },
        {"speech_path": "x.flac", "answer": "No question."},
    ]
    path = tmp_path / "LibriSQA-PartI" / "LibriSQA-PartI-test.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "librisqa1.jsonl"

    report = convert_librisqa(path, librispeech, out)

    assert report.num_written == 2
    assert dict(report.skipped) == {MISSING_FILE: 1, MALFORMED_ROW: 1}
    a, b = read_instructions(out)
    assert a.id == "1089-134686-0000:sqa:0" and a.task == "sqa"
    assert a.question == "What did he hope for?"
    assert "What did he hope for?" in a.instruction and "<speech>" in a.instruction
    assert a.response == "He hoped there would be stew for dinner."
    assert a.transcript == "HE HOPED THERE WOULD BE STEW FOR DINNER"
    assert a.options is None
    assert a.audio == str(librispeech / "test-clean/1089/134686/1089-134686-0000.flac")
    assert b.audio is not None and b.audio.endswith("1089-134686-0001.flac")


def test_librisqa_part_two_multiple_choice(librispeech: Path, tmp_path: Path) -> None:
    data = [
        {
            "speech_path": "1089-134686-0000.flac",
            "question_and_option": "What did he hope for? A. Soup B. Stew for dinner C. Bread D. Nothing",
            "answer": "B",
            "answer_and_analysis": "B. He hoped there would be stew.",
        },
        {
            "speech_path": "1089-134686-0001.flac",
            "question_and_option": "Who speaks?\n(A) a man\n(B) a woman\n(C) a child\n(D) nobody",
            "answer": "(A)",
            "answer_and_analysis": "A",
        },
        {
            "speech_path": "1089-134686-0001.flac",
            "question_and_option": "Is it one of these? 1) yes 2) no",
            "answer": "A",
            "answer_and_analysis": "A",
        },
    ]
    path = tmp_path / "LibriSQA-PartII-test.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "librisqa2.jsonl"

    report = convert_librisqa(path, librispeech, out)

    assert report.num_written == 3 and dict(report.notes) == {OPTIONS_UNPARSED: 1}
    a, b, c = read_instructions(out)
    assert a.question == "What did he hope for?"
    assert a.options == ("Soup", "Stew for dinner", "Bread", "Nothing")
    assert a.response == "B"
    assert "\nA. Soup\nB. Stew for dinner\nC. Bread\nD. Nothing" in a.instruction
    assert (b.options, b.response) == (("a man", "a woman", "a child", "nobody"), "A")
    assert c.options is None and c.question == "Is it one of these? 1) yes 2) no"


def test_librisqa_part_one_is_scored_by_judge_accuracy(
    librispeech: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """Part I (free-form answers, the paper's 83.2 % judge accuracy) is
    detected by its keys and its answers are judged; Part II's lettered
    answers keep the choice rule and are never sent to the judge. Verdicts are
    known: one cached ``Correct: yes``, the other item judged ``Correct: no``
    by the scripted LLM, so 1 of 2 = 50 %, Wilson 95 % [9.45, 90.55]."""
    part1 = tmp_path / "LibriSQA-PartI-test.json"
    part1.write_text(
        json.dumps(
            [
                {
                    "speech_path": "1089-134686-0000.flac",
                    "question": "What did he hope for?",
                    "answer": "He hoped there would be stew for dinner.",
                    "text": "HE HOPED THERE WOULD BE STEW FOR DINNER",
                    "duration": 1.0,
                },
                {
                    "speech_path": "1089-134686-0001.flac",
                    "question": "What was he counselled?",
                    "answer": "To stuff it into him.",
                    "text": "STUFF IT INTO YOU",
                    "duration": 1.0,
                },
            ]
        )
    )
    part2 = tmp_path / "LibriSQA-PartII-test.json"
    part2.write_text(
        json.dumps(
            [
                {
                    "speech_path": "1089-134686-0000.flac",
                    "question_and_option": "What did he hope for? A. Soup B. Stew C. Bread D. Nothing",
                    "answer": "B",
                    "answer_and_analysis": "B. He hoped there would be stew.",
                }
            ]
        )
    )
    convert_librisqa(part1, librispeech, tmp_path / "p1.jsonl")
    convert_librisqa(part2, librispeech, tmp_path / "p2.jsonl")
    examples = [
        *read_instructions(tmp_path / "p1.jsonl"),
        *read_instructions(tmp_path / "p2.jsonl"),
    ]
    assert [e.options is None for e in examples] == [True, True, False]
    hypotheses = ["Stew for his dinner.", "Nothing at all.", "B"]

    judge = scripted_judge(test_cards, "Correct: no", tmp_path / "c", mode="accuracy")
    first = examples[0]
    assert first.question is not None and first.response is not None
    key = judge.key(JudgeItem(first.question, first.response, hypotheses[0]))
    judge.cache.put(key, "Correct: yes", judge.identity)

    result = score_texts(
        "sqa",
        hypotheses,
        [str(e.response) for e in examples],
        instructions=[e.instruction for e in examples],
        questions=[e.question for e in examples],
        options=[e.options for e in examples],
        answers=[e.answers for e in examples],
        judge=judge,
    )

    sqa = result["metrics"]["sqa"]
    judged = sqa["judge"]
    assert (judged["num_examples"], judged["num_multiple_choice"]) == (2, 1)
    assert (judged["num_correct"], judged["num_calls"]) == (1, 1)
    accuracy = judged["accuracy"]
    assert (accuracy["n"], accuracy["value"]) == (2, 50.0)
    assert accuracy["low"] == pytest.approx(9.45, abs=0.01)
    assert accuracy["high"] == pytest.approx(90.55, abs=0.01)
    assert sqa["choice"]["num_examples"] == 1 and sqa["choice"]["accuracy"] == 100.0
    assert [row.get("judge_correct") for row in result["scores"]] == [
        True,
        False,
        None,
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Q? A. x B. y C. z D. w", ("Q?", ("x", "y", "z", "w"))),
        ("Q?\nA: x\nB: y\nC: z\nD: w", ("Q?", ("x", "y", "z", "w"))),
        ("Q? A. x B. y C. z", None),  # three options
        ("Q? B. x A. y C. z D. w", None),  # out of order
        ("A. x B. y C. z D. w", None),  # no question
    ],
)
def test_split_options(text: str, expected: object) -> None:
    assert split_options(text) == expected


def squad_json(path: Path) -> Path:
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "Super_Bowl_50",
                "paragraphs": [
                    {
                        "context": "super bowl fifty was an american football game",
                        "qas": [
                            {
                                "answers": [
                                    {"answer_start": 0, "text": "super bowl"},
                                    {"answer_start": 0, "text": "super bowl"},
                                    {"answer_start": 0, "text": "super bowl fifty"},
                                ],
                                "question": "What game was it?",
                                "id": "56be4db0acb8001400a502ec",
                            },
                            {"answers": [], "question": "No answer?", "id": "bad"},
                        ],
                    },
                    {
                        "context": "the panthers finished the season",
                        "qas": [
                            {
                                "answers": [{"answer_start": 4, "text": "panthers"}],
                                "question": "Who finished?",
                                "id": "56be4e1facb8001400a502f9",
                            }
                        ],
                    },
                    {
                        "context": "no audio for this paragraph",
                        "qas": [
                            {
                                "answers": [{"answer_start": 0, "text": "no"}],
                                "question": "Audio?",
                                "id": "x",
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_spoken_squad_paragraph_audio_and_questions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = squad_json(tmp_path / "spoken_test-v1.1.json")
    wavs = tmp_path / "Spoken-SQuAD_audio" / "dev_wav"
    # 1-based TopicIndex_ParagraphIndex_SentenceIndex.wav; 10 sorts after 2.
    sentences = {
        "1_1_1.wav": 0.6,
        "1_1_2.wav": 0.5,
        "1_1_10.wav": 0.4,
        "1_2_1.wav": 0.7,
    }
    for seed, (name, seconds) in enumerate(sentences.items()):
        write_tone(wavs / name, seconds, 22_050, seed=seed)
    out_dir = tmp_path / "sqa"

    args = ["spoken_squad", str(json_path), "--audio-dir", str(wavs.parent)]
    assert main([*args, "--out-dir", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "index_base_1" in printed and "missing_file: 1" in printed

    examples = read_instructions(out_dir / "spoken_test-v1.1.jsonl")
    assert [e.id for e in examples] == [
        "56be4db0acb8001400a502ec",
        "56be4e1facb8001400a502f9",
    ]
    first = examples[0]
    assert first.answers == ("super bowl", "super bowl fifty")
    assert first.response == "super bowl" and first.question == "What game was it?"
    assert first.task == "sqa" and first.lang == "en"

    # The paragraph's audio is its sentences in order 1, 2, 10.
    paragraph = decode_audio(out_dir / "audio" / "1_1.wav")
    parts = [
        decode_audio(wavs / n).waveform
        for n in ("1_1_1.wav", "1_1_2.wav", "1_1_10.wav")
    ]
    assert paragraph.sample_rate == 22_050
    assert torch.equal(paragraph.waveform, torch.cat(parts))
    assert first.audio == str((out_dir / "audio" / "1_1.wav").resolve())

    # A rerun reuses the written paragraphs.
    mtime = (out_dir / "audio" / "1_1.wav").stat().st_mtime_ns
    assert main([*args, "--out-dir", str(out_dir)]) == 0
    assert (out_dir / "audio" / "1_1.wav").stat().st_mtime_ns == mtime


def test_spoken_squad_without_audio_is_refused(tmp_path: Path) -> None:
    json_path = squad_json(tmp_path / "spoken_test-v1.1.json")
    (tmp_path / "empty").mkdir()

    with pytest.raises(ConvertError, match="no <topic>_<paragraph>_<sentence>.wav"):
        convert_spoken_squad(json_path, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ConvertError, match="SQuAD-format"):
        bad = tmp_path / "bad.json"
        bad.write_text("[]")
        convert_spoken_squad(bad, tmp_path / "empty", tmp_path / "out")
