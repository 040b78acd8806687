"""Transcript normalisation (the one policy of every transcript target),
checked against hand-written expectations."""

from __future__ import annotations

import pytest

from speechmapper_plugin.llm import TRANSCRIPT_NORMALIZATIONS, normalize_transcript

LIBRISPEECH = "I THINK I'LL GO HOME SAID MISTER BROWN IN A LOW VOICE"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("as_given", LIBRISPEECH),
        ("lowercase", "i think i'll go home said mister brown in a low voice"),
        ("sentence_case", "I think I'll go home said mister brown in a low voice"),
    ],
)
def test_librispeech_transcript(mode: str, expected: str) -> None:
    assert normalize_transcript(LIBRISPEECH, mode) == expected  # type: ignore[arg-type]


def test_sentence_case_keeps_words_that_contain_i() -> None:
    text = "IT IS IDLE IF I'M IN IT I'D SAY AND I'VE SEEN I"
    assert (
        normalize_transcript(text, "sentence_case")
        == "It is idle if I'm in it I'd say and I've seen I"
    )


def test_sentence_case_of_empty_and_leading_space() -> None:
    assert normalize_transcript("", "sentence_case") == ""
    assert normalize_transcript("  HELLO", "sentence_case") == "  Hello"


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="as_given, lowercase, sentence_case"):
        normalize_transcript("x", "upper")  # type: ignore[arg-type]
    assert TRANSCRIPT_NORMALIZATIONS == ("as_given", "lowercase", "sentence_case")
