"""Re-segmenting a whole recording's hypothesis onto its reference segments
(mwerSegmenter's minimum-edit-distance cut), on hand-worked examples and
against an exhaustive search over every cut."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF

from speechmapper_plugin.evaluation.options import ScoringSection
from speechmapper_plugin.evaluation.resegment import resegment, uses_characters
from speechmapper_plugin.evaluation.scoring import score_texts


def _edit_distance(a: list[str], b: list[str]) -> int:
    """Plain textbook Levenshtein (the test's own, independent of the module)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            )
        previous = current
    return previous[-1]


def _exhaustive_best(hyp: list[str], refs: list[list[str]]) -> int:
    """The least total edit distance over every way to cut ``hyp`` into
    ``len(refs)`` contiguous (possibly empty) pieces."""
    best = None
    for cuts in itertools.combinations_with_replacement(
        range(len(hyp) + 1), len(refs) - 1
    ):
        bounds = [0, *cuts, len(hyp)]
        cost = sum(
            _edit_distance(hyp[bounds[s] : bounds[s + 1]], ref)
            for s, ref in enumerate(refs)
        )
        best = cost if best is None else min(best, cost)
    assert best is not None
    return best


def test_exact_hypothesis_is_cut_at_the_reference_boundaries() -> None:
    result = resegment("the cat sat on the mat", ["the cat sat", "on the mat"])
    assert result.segments == ["the cat sat", "on the mat"]
    assert (result.errors, result.reference_units) == (0, 6)


def test_empty_hypothesis_gives_empty_pieces_and_counts_every_deletion() -> None:
    # Nothing to place: every one of the 3 reference words is a deletion.
    for hypothesis in ("", "   \n"):
        result = resegment(hypothesis, ["a b", "c"])
        assert result.segments == ["", ""]
        assert result.errors == 3


def test_shorter_hypothesis() -> None:
    # refs "a b c" | "d e f", hyp "a b e f":
    #   "a b" | "e f"   -> 1 deletion (c) + 1 deletion (d) = 2
    #   "a b e" | "f"   -> 1 substitution (e/c) + 2 deletions (d, e) = 3
    #   "a" | "b e f"   -> 2 deletions + 1 substitution (b/d) = 3
    # so the cut falls after "b".
    result = resegment("a b e f", ["a b c", "d e f"])
    assert result.segments == ["a b", "e f"]
    assert result.errors == 2


def test_longer_hypothesis_keeps_leading_and_trailing_insertions() -> None:
    # refs "a b" | "c d", hyp "x a b c d y": x can only be an insertion in the
    # first segment, y one in the last: 2 errors; any other cut splits a
    # matching pair and costs more.
    result = resegment("x a b c d y", ["a b", "c d"])
    assert result.segments == ["x a b", "c d y"]
    assert result.errors == 2


def test_an_insertion_at_a_boundary_stays_with_the_earlier_segment() -> None:
    # "a b z" | "c d" and "a b" | "z c d" both cost 1 (z inserted): the tie
    # rule keeps z with the earlier segment (as mweralign 1.4.1 does).
    assert resegment("a b z c d", ["a b", "c d"]).segments == ["a b z", "c d"]


def test_substitutions_do_not_move_the_boundary() -> None:
    # "one two tree" | "four fife": 2 substitutions; cutting one word later
    # or earlier adds an insertion and a deletion.
    result = resegment("one two tree four fife", ["one two three", "four five"])
    assert result.segments == ["one two tree", "four fife"]
    assert result.errors == 2


def test_more_segments_than_hypothesis_words() -> None:
    # Only "b" matches anything: "" | "b" | "" costs 2 deletions (a, c).
    result = resegment("b", ["a", "b", "c"])
    assert result.segments == ["", "b", ""]
    assert result.errors == 2


def test_comparison_ignores_case_but_pieces_keep_the_hypothesis_text() -> None:
    # "hello" matches "Hello"; "world." does not match "world" (1 error).
    result = resegment("hello  world. GOOD night", ["Hello world", "Good night"])
    assert result.segments == ["hello  world.", "GOOD night"]
    assert result.errors == 1
    # Case-sensitive: hello/Hello and GOOD/Good are substitutions too.
    assert (
        resegment(
            "hello world. GOOD night",
            ["Hello world", "Good night"],
            case_sensitive=True,
        ).errors
        == 3
    )


def test_character_mode_for_chinese() -> None:
    # refs 我爱你 | 你好吗, hyp 我爱他你好 (7 characters less 2):
    #   我爱他 | 你好   -> 1 substitution (他/你) + 1 deletion (吗) = 2
    #   我爱他你 | 好   -> 1 sub + 1 insertion + 2 deletions (你, 吗) = 4
    #   我爱 | 他你好   -> 1 deletion (你) + 1 insertion (他) + 1 deletion (吗) = 3
    result = resegment("我爱他 你好", ["我爱你", "你好吗"], characters=True)
    assert result.segments == ["我爱他", "你好"]
    assert (result.errors, result.reference_units) == (2, 6)
    # As words, the hypothesis is 2 units against 2 one-word segments.
    assert resegment("我爱他 你好", ["我爱你", "你好吗"]).segments == ["我爱他", "你好"]
    assert uses_characters("zh") and uses_characters("jpn")
    assert not uses_characters("de") and not uses_characters(None)


def test_an_empty_reference_segment_gets_an_empty_piece() -> None:
    result = resegment("a b c d", ["a b", "", "c d"])
    assert result.segments == ["a b", "", "c d"]
    assert result.errors == 0


def test_bad_references_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one reference segment"):
        resegment("a b", [])
    with pytest.raises(TypeError, match="sequence of reference segments"):
        resegment("a b", "a b")


def test_cost_is_the_exhaustive_minimum_on_random_cases() -> None:
    rng = random.Random(0)
    vocab = list("abcde")
    for _ in range(150):
        refs = [
            [rng.choice(vocab) for _ in range(rng.randint(0, 4))]
            for _ in range(rng.randint(1, 4))
        ]
        hyp = [w for ref in refs for w in ref if rng.random() > 0.2]
        hyp = [rng.choice(vocab) if rng.random() < 0.2 else w for w in hyp]
        for _ in range(rng.randint(0, 3)):
            hyp.insert(rng.randint(0, len(hyp)), rng.choice(vocab))
        result = resegment(" ".join(hyp), [" ".join(r) for r in refs])
        best = _exhaustive_best(hyp, refs)
        assert result.errors == best, (refs, hyp)
        # The pieces are the hypothesis, in order, and achieve that cost.
        assert " ".join(" ".join(result.segments).split()) == " ".join(hyp)
        pieces = [s.split() for s in result.segments]
        assert (
            sum(_edit_distance(p, r) for p, r in zip(pieces, refs, strict=True)) == best
        )


def test_a_session_is_scored_over_the_whole_recording_for_asr() -> None:
    # Segments "the cat sat" | "on a mat", hypothesis "the cat sat on mat":
    # 1 deletion (a) in 6 reference words, raw and normalised.
    metrics = score_texts(
        "asr", ["the cat sat on mat"], [["the cat sat", "on a mat"]], langs=["en"]
    )["metrics"]["asr"]
    assert (metrics["word_errors_raw"], metrics["reference_words_raw"]) == (1, 6)
    assert metrics["wer_raw"] == pytest.approx(100 / 6)
    assert metrics["wer"] == pytest.approx(100 / 6)


def test_a_session_translation_is_cut_onto_its_segments_then_scored(
    tmp_path: Path,
) -> None:
    references = ["der Hund ist sehr klein", "die Katze schläft heute"]
    sources = ["the dog is very small", "the cat sleeps today"]
    # The model's cut differs from the reference's (one sentence, a word lost
    # and a word changed): the minimum-edit cut is "der Hund ist klein" |
    # "die Katze schlief heute" (1 deletion + 1 substitution).
    hypothesis = "der Hund ist klein die Katze schlief heute"
    cut = ["der Hund ist klein", "die Katze schlief heute"]
    scored = score_texts(
        "st",
        [hypothesis, "ein Satz"],
        [references, "ein Satz"],
        target_langs=["de", "de"],
        sources=[sources, "a sentence"],
        scoring=ScoringSection(comet=True),
        comet_dir=tmp_path,
    )
    metrics = scored["metrics"]["st/de"]
    # sacreBLEU itself, on the hand-cut pieces and the plain sentence.
    expected = BLEU().corpus_score([*cut, "ein Satz"], [[*references, "ein Satz"]])
    assert metrics["bleu"] == pytest.approx(expected.score)
    assert metrics["chrf"] == pytest.approx(
        CHRF().corpus_score([*cut, "ein Satz"], [[*references, "ein Satz"]]).score
    )
    assert (metrics["num_examples"], metrics["num_sessions"]) == (3, 1)
    session, sentence = scored["scores"]
    assert [s["hypothesis"] for s in session["segments"]] == cut
    assert "sentence_bleu" in sentence and "segments" not in sentence
    # COMET reads the pieces line-aligned with their source segments.
    lines = {
        name: (tmp_path / "de" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
        for name in ("src", "hyp", "ref")
    }
    assert lines == {
        "src": [*sources, "a sentence"],
        "hyp": [*cut, "ein Satz"],
        "ref": [*references, "ein Satz"],
    }


def test_a_session_with_misaligned_source_segments_is_refused() -> None:
    with pytest.raises(ValueError, match="2 reference segments but 1 source"):
        score_texts("st", ["a b"], [["a", "b"]], target_langs=["de"], sources=[["x"]])
