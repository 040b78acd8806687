"""Instruction data: the JSONL format, its checks and the three task builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechmapper_plugin.data.instructions import (
    ASR_EVAL_PROMPTS,
    ASR_TRAIN_PROMPTS,
    SPEECH_PLACEHOLDER,
    InstructionExample,
    InstructionFormatError,
    SpeechRecord,
    build_asr_examples,
    build_sqa_examples,
    build_st_examples,
    language_name,
    read_instructions,
    write_instructions,
)
from speechmapper_plugin.data.instructions.prompts import LANGUAGE_NAMES
from speechmapper_plugin.evaluation import language_code


def test_asr_builder_uses_the_pool_and_keeps_the_transcript() -> None:
    records = [
        SpeechRecord(id=f"u{i}", transcript=f"sentence {i}", lang="en")
        for i in range(30)
    ]
    train = list(build_asr_examples(records, pool="train", seed=1))
    held_out = list(build_asr_examples(records, pool="eval", seed=1))

    assert {e.instruction.split("\n")[0] for e in train} <= set(ASR_TRAIN_PROMPTS)
    assert {e.instruction.split("\n")[0] for e in held_out} <= set(ASR_EVAL_PROMPTS)
    assert not set(ASR_TRAIN_PROMPTS) & set(ASR_EVAL_PROMPTS)
    assert len({e.instruction for e in train}) > 3
    for example, record in zip(train, records, strict=True):
        assert example.speech == record.id and example.audio is None
        assert example.response == example.transcript == record.transcript
        assert example.response_is_transcript is True
        assert example.instruction.count(SPEECH_PLACEHOLDER) == 1
    assert train == list(build_asr_examples(records, pool="train", seed=1))


def test_asr_builder_rejects_missing_transcripts() -> None:
    with pytest.raises(ValueError, match="'u0' has no transcript"):
        list(build_asr_examples([SpeechRecord(id="u0", transcript=" ")]))


def test_st_and_sqa_builders() -> None:
    record = SpeechRecord(
        id="a", transcript="good morning", lang="en", audio="/x/a.wav"
    )
    (st,) = build_st_examples([(record, "Guten Morgen", "de")])
    assert "German" in st.instruction and st.response == "Guten Morgen"
    assert st.audio == "/x/a.wav" and st.speech is None and st.target_lang == "de"
    assert st.response_is_transcript is None

    sqa = list(build_sqa_examples([(record, "What time of day is it?", "morning")] * 2))
    assert [e.id for e in sqa] == ["a:sqa:0", "a:sqa:1"]
    assert all("What time of day is it?" in e.instruction for e in sqa)
    assert all(e.instruction.count(SPEECH_PLACEHOLDER) == 1 for e in sqa)
    assert all(e.response_is_transcript is None for e in sqa)


def test_round_trip_and_relative_audio(tmp_path: Path) -> None:
    examples = [
        InstructionExample(
            id="1",
            instruction=f"Transcribe.\n{SPEECH_PLACEHOLDER}",
            response="hi",
            speech="u1",
        ),
        InstructionExample(
            id="2", instruction=f"Q? {SPEECH_PLACEHOLDER}", audio="clips/b.wav"
        ),
    ]
    path = tmp_path / "data.jsonl"
    assert write_instructions(path, examples) == 2
    read = read_instructions(path)
    assert read[0] == examples[0]
    assert read[1].audio == str(tmp_path / "clips/b.wav")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"id": "1", "instruction": "Transcribe.", "speech": "u"}',
            "placeholder <speech> exactly once",
        ),
        (
            '{"id": "1", "instruction": "<speech> <speech>", "speech": "u"}',
            "contains it 2 times",
        ),
        ('{"id": "1", "instruction": "<speech>"}', "exactly one of `speech`"),
        (
            '{"id": "1", "instruction": "<speech>", "speech": "u", "audio": "a.wav"}',
            "exactly one of `speech`",
        ),
        (
            '{"id": "", "instruction": "<speech>", "speech": "u"}',
            "`id` must be a non-empty string",
        ),
        (
            '{"id": "1", "instruction": "<speech>", "speech": "u", "colour": "red"}',
            "unknown fields",
        ),
        (
            '{"id": "1", "instruction": "<speech>", "speech": 3}',
            "`speech` must be a string",
        ),
        (
            '{"id": "1", "instruction": "<speech>", "speech": "u", "transcript": "hi", "response_is_transcript": "yes"}',
            "`response_is_transcript` must be true or false, but is 'yes'",
        ),
        (
            '{"id": "1", "instruction": "<speech>", "speech": "u", "response": "hi", "response_is_transcript": true}',
            "`response_is_transcript` is true but there is no `transcript`",
        ),
        (
            '{"id": "1", "instruction": "<speech>", "speech": "u", "response": "HI", "transcript": "hi", "response_is_transcript": true}',
            "`response` \\('HI'\\) differs from `transcript` \\('hi'\\)",
        ),
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_lines_name_the_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "0", "instruction": "<speech>", "speech": "u0"}\n' + line + "\n"
    )
    with pytest.raises(InstructionFormatError, match=message) as info:
        read_instructions(path)
    assert f"{path}:2" in str(info.value)


def test_a_response_that_is_the_transcript_may_be_left_out(tmp_path: Path) -> None:
    path = tmp_path / "asr.jsonl"
    path.write_text(
        '{"id": "1", "instruction": "<speech>", "speech": "u", "transcript": " HI THERE ", "response_is_transcript": true}\n'
        '{"id": "2", "instruction": "<speech>", "speech": "u", "response": "HI THERE", "transcript": "HI THERE ", "response_is_transcript": true}\n'
    )
    one, two = read_instructions(path)
    assert one.response == two.response == "HI THERE"
    assert one.response_is_transcript is two.response_is_transcript is True
    # The builder's examples survive the file.
    (built,) = build_asr_examples([SpeechRecord(id="u", transcript="HI THERE")])
    write_instructions(path, [built])
    assert read_instructions(path) == [built]
    assert '"response_is_transcript": true' in path.read_text()


def test_duplicate_ids_and_empty_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "0", "instruction": "<speech>", "speech": "a"}\n' * 2)
    with pytest.raises(
        InstructionFormatError, match="duplicate id '0' \\(first on line 1\\)"
    ):
        read_instructions(path)

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InstructionFormatError, match="holds no example"):
        read_instructions(empty)
    with pytest.raises(FileNotFoundError):
        read_instructions(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("de", "German"),
        ("DE", "German"),
        (" fr ", "French"),
        ("deu", "German"),
        ("zh-CN", "Chinese"),
        ("pt_BR", "Portuguese"),
        ("cy", "Welsh"),
        ("German", "German"),
        ("german", "German"),
        ("Brazilian Portuguese", "Brazilian Portuguese"),
        ("swahili", "Swahili"),
    ],
)
def test_language_names_for_codes_and_names(given: str, name: str) -> None:
    assert language_name(given) == name


@pytest.mark.parametrize("code", ["xx", "zz-CN", "qaa", "Xy_ab"])
def test_an_unknown_language_code_is_refused_with_the_known_ones(code: str) -> None:
    with pytest.raises(
        ValueError, match=f"Unknown target language code '{code}'"
    ) as caught:
        language_name(code)

    message = str(caught.value)
    for known in LANGUAGE_NAMES:
        assert f" {known}," in message or f" {known};" in message


def test_an_empty_language_is_refused() -> None:
    with pytest.raises(ValueError, match="A target language must be given"):
        language_name("  ")


def test_names_and_codes_agree_with_the_comparison_code() -> None:
    for code, name in LANGUAGE_NAMES.items():
        assert language_code(name) == language_code(code) == code
        assert language_name(language_code(name)) == name
