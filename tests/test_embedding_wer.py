"""The functions behind stage 1's headline metric (embedding WER):
``normalize_text`` against hand-written expectations and ``word_errors``
against jiwer called directly and against edits counted by hand."""

from __future__ import annotations

import jiwer
import pytest

from speechmapper_plugin.metrics import normalize_text, word_errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Dog SAW a bird.", "the dog saw a bird"),
        ("  many   spaces\there\n", "many spaces here"),
        ("don't stop, won't stop!", "don't stop won't stop"),
        ("snake_case-and/slashes", "snake case and slashes"),
        ("ﬁve", "five"),  # NFKC folds the ligature
        ("Größe ÉTÉ", "größe été"),  # letters beyond ASCII are kept
        ("!?...", ""),
    ],
)
def test_normalize_text_by_hand(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_word_errors_count_edits_by_hand() -> None:
    # one substitution (saw -> sees), one deletion (a), one insertion (today)
    refs = ["The dog saw a bird."]
    hyps = ["the dog sees bird today"]
    assert word_errors(refs, hyps) == (3, 5)


def test_word_errors_are_casing_and_punctuation_blind() -> None:
    assert word_errors(["Hello, World!"], ["hello world"]) == (0, 2)


def test_word_errors_match_jiwer_on_a_corpus() -> None:
    refs = [
        "a quiet dog watched a road yesterday",
        "the young song heard a book at night",
        "a green woman followed a bird",
    ]
    hyps = [
        "a quiet dog watched the road",
        "young song heard heard a book at night",
        "a green woman followed a bird",
    ]
    out = jiwer.process_words(refs, hyps)
    errors, words = word_errors(refs, hyps)
    assert errors == out.substitutions + out.deletions + out.insertions
    assert words == sum(len(r.split()) for r in refs)
    assert 100 * errors / words == pytest.approx(100 * jiwer.wer(refs, hyps))


def test_empty_reference_counts_every_hypothesis_word_as_an_insertion() -> None:
    assert word_errors(["", "a b"], ["x y z", "a b"]) == (3, 2)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="must have the same length"):
        word_errors(["a"], ["a", "b"])
