"""Evaluation metrics against the libraries called directly on the same strings,
the normalisers on tricky cases, and the rules written here (multiple choice,
exact match/F1, failure signatures) on their edge cases."""

from __future__ import annotations

import os
import stat
from importlib.metadata import version
from pathlib import Path

import jiwer
import pytest
import sacrebleu
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from speechmapper_plugin.evaluation import (
    ScoringSection,
    adherence,
    asr_scores,
    detect_language,
    ends_in_text_loop,
    exact_match,
    failure_signatures,
    language_code,
    normalizer_for,
    qa_scores,
    render_summary,
    run_comet,
    score_texts,
    token_f1,
    translation_scores,
    write_comet_inputs,
)
from speechmapper_plugin.evaluation.language import LanguageIdentifierError
from speechmapper_plugin.evaluation.qa import choice_outcome, parse_options

REFS = [
    "Mr. Smith paid twenty five dollars, didn't he?",
    "The colour of the sky is grey.",
    "I'm going to the store at 3 o'clock.",
]
HYPS = [
    "mister smith paid $25 did not he",
    "the color of sky is gray and blue",
    "Im going to store at three oclock",
]


def test_wer_and_cer_equal_jiwer_on_raw_and_normalised_text() -> None:
    metrics, per_utt = asr_scores(REFS, HYPS, ["en"] * 3)

    assert metrics["wer_raw"] == pytest.approx(100 * jiwer.wer(REFS, HYPS))
    assert metrics["cer_raw"] == pytest.approx(100 * jiwer.cer(REFS, HYPS))

    english = EnglishTextNormalizer()
    refs = [" ".join(english(r).split()) for r in REFS]
    hyps = [" ".join(english(h).split()) for h in HYPS]
    assert metrics["wer"] == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert metrics["cer"] == pytest.approx(100 * jiwer.cer(refs, hyps))
    # Normalisation removes the spelling/number/contraction differences.
    assert metrics["wer"] < metrics["wer_raw"]

    # Corpus level: the sum of errors over the sum of reference words.
    out = jiwer.process_words(refs, hyps)
    assert metrics["word_errors"] == out.substitutions + out.deletions + out.insertions
    assert metrics["reference_words"] == sum(len(r.split()) for r in refs)
    assert sum(u["word_errors"] for u in per_utt) == metrics["word_errors"]
    assert metrics["normalizers"] == {
        "whisper_normalizer.english.EnglishTextNormalizer": version(
            "whisper-normalizer"
        )
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Twenty-five dollars", "$25"),  # numbers to digits, currency
        ("I don't know, he's gone.", "i do not know he has gone"),  # contractions
        ("HELLO,   World!!!", "hello world"),  # casing, punctuation, spaces
        # British spelling, titles; Whisper reads every "'s" as "is" (on both sides alike).
        ("The colour of Mr. Brown's car", "the color of mister brown is car"),
        ("uh I think hmm yes", "i think yes"),  # fillers dropped
    ],
)
def test_the_english_normaliser_on_tricky_cases(text: str, expected: str) -> None:
    normalizer = normalizer_for("en")
    assert normalizer.name.endswith("EnglishTextNormalizer")
    assert normalizer(text) == expected


def test_other_languages_get_the_basic_normaliser() -> None:
    german = normalizer_for("de_de")
    assert german.name.endswith("BasicTextNormalizer")
    assert (
        german("Das ist GUT, oder? Grüße [Lachen] aus Köln!")
        == "das ist gut oder grüße aus köln"
    )
    assert german("Zwei-und-zwanzig 22") == " ".join(
        BasicTextNormalizer()("Zwei-und-zwanzig 22").split()
    )
    # Per-pair languages pick each pair's normaliser.
    metrics, per_utt = asr_scores(
        ["It's 5.", "Es ist 5."], ["it is five", "es ist fünf"], ["en", "deu"]
    )
    assert [u["normalizer"].rsplit(".", 1)[1] for u in per_utt] == [
        "EnglishTextNormalizer",
        "BasicTextNormalizer",
    ]
    assert per_utt[0]["word_errors"] == 0  # "five" -> "5"
    assert per_utt[1]["word_errors"] == 1  # no number words in the basic one
    assert len(metrics["normalizers"]) == 2


def test_an_empty_reference_counts_hypothesis_words_as_insertions() -> None:
    metrics, per_utt = asr_scores(["", "a cat"], ["hello there", "a cat"], ["en", "en"])
    assert per_utt[0]["word_errors"] == 2 and per_utt[0]["reference_words"] == 0
    assert metrics["wer"] == pytest.approx(100 * 2 / 2)


def test_bleu_and_chrf_equal_sacrebleu_with_signatures() -> None:
    hyps = ["Der Hund sah einen Vogel.", "Die Katze schläft auf dem Sofa."]
    refs = ["Der alte Hund sah einen Vogel.", "Die Katze schläft auf dem Sofa."]
    metrics, per_utt = translation_scores(hyps, refs, "de")
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in metrics["bleu_signature"]
    assert f"version:{sacrebleu.__version__}" in metrics["bleu_signature"]
    assert metrics["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    assert per_utt[1]["sentence_bleu"] == pytest.approx(100.0)

    zh_hyps, zh_refs = ["狗看见了一只鸟。"], ["老狗看见了一只鸟。"]
    zh, _ = translation_scores(zh_hyps, zh_refs, "zh")
    assert "tok:zh" in zh["bleu_signature"]
    assert zh["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(zh_hyps, [zh_refs], tokenize="zh").score
    )
    assert zh["bleu"] != pytest.approx(sacrebleu.corpus_bleu(zh_hyps, [zh_refs]).score)


def test_comet_files_and_the_command_without_comet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    files = write_comet_inputs(tmp_path / "de", ["a\nb", "c"], ["x", "y"], ["r1", "r2"])
    assert (tmp_path / "de/src.txt").read_text() == "a b\nc\n"
    assert (tmp_path / "de/hyp.txt").read_text() == "x\ny\n"
    result = run_comet(files)
    assert result["score"] is None
    assert result["command"].startswith("comet-score -s ")
    assert "--model Unbabel/wmt22-comet-da" in result["command"]
    assert "separate" in result["note"] or "own environment" in result["note"]


def test_comet_score_is_read_from_comet_score_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``comet-score`` ends with the system score line; an executable that
    prints COMET's output format stands in for the real one (not installable
    beside fairseq2)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "comet-score"
    script.write_text(
        "#!/bin/sh\n"
        'echo "$@" > "$(dirname "$0")/args"\n'
        'echo "hyp.txt\tSegment 0\tscore: 0.8123"\n'
        'echo "hyp.txt\tSegment 1\tscore: 0.7001"\n'
        'echo "hyp.txt\tscore: 0.7562"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    files = write_comet_inputs(
        tmp_path / "fr", ["s1", "s2"], ["h1", "h2"], ["r1", "r2"]
    )
    result = run_comet(files)
    assert result["score"] == pytest.approx(0.7562)
    args = (bin_dir / "args").read_text().split()
    assert args == [
        "-s",
        str(files["src"]),
        "-t",
        str(files["hyp"]),
        "-r",
        str(files["ref"]),
        "--model",
        "Unbabel/wmt22-comet-da",
    ]


MC = "<speech>\nWhat did the dog see?\n(A) a cat\n(B) a bird\n(C) a big bird\n(D) nothing"


@pytest.mark.parametrize(
    ("hypothesis", "selected", "correct"),
    [
        ("B", ("B",), True),
        ("(B)", ("B",), True),
        ("B. a bird", ("B",), True),
        ("The answer is B.", ("B",), True),
        ("Option B", ("B",), True),
        ("It saw a bird.", ("B",), True),  # option text, no letter
        ("A bird flew by.", ("B",), True),  # the article "A" is not option A
        ("It saw a big bird.", ("C",), False),  # "a bird" inside "a big bird"
        ("A or B", (), False),  # letters inside prose without markers
        ("(A) or (B)", ("A", "B"), False),  # two options: wrong
        ("I don't know", (), False),
        ("", (), False),
        ("b", (), False),  # lower-case letter is not a choice
    ],
)
def test_multiple_choice_rule(
    hypothesis: str, selected: tuple[str, ...], correct: bool
) -> None:
    outcome = choice_outcome(hypothesis, "B", MC)
    assert outcome is not None
    assert outcome.selected == selected
    assert outcome.correct is correct


def test_multiple_choice_options_and_reference_forms() -> None:
    assert parse_options(MC) == {
        "A": "a cat",
        "B": "a bird",
        "C": "a big bird",
        "D": "nothing",
    }
    assert parse_options("Pick: (A) red (B) blue <speech>") == {"A": "red", "B": "blue"}
    assert parse_options("A. Transcribe <speech>") == {}  # one option is no choice
    assert parse_options("(A) x\n(C) y\n<speech>") == {}  # letters out of order

    # The reference by letter or by text; given options win over the instruction.
    for reference in ("B", "(B)", "B) a bird", "a bird", "A bird."):
        outcome = choice_outcome("B", reference, MC)
        assert outcome is not None and outcome.reference == "B", reference
    given = choice_outcome("blue", "B", "<speech> Which colour?", ["red", "blue"])
    assert given is not None and given.correct
    assert choice_outcome("B", "B", "Transcribe <speech>") is None

    metrics, rows = qa_scores(
        ["B", "(A)", "no idea", "B"],
        ["B", "B", "B", "an elephant"],
        [MC, MC, MC, MC],
    )
    assert metrics["choice"] == {
        "num_examples": 3,
        "accuracy": pytest.approx(100 / 3),
        "correct": 1,
        "no_choice": 1,
        "reference_names_no_option": 1,
    }
    assert rows[3]["choice_reference"] is None


@pytest.mark.parametrize(
    ("hypothesis", "reference", "em", "f1"),
    [
        ("The Eiffel Tower.", "eiffel tower", True, 1.0),
        ("in the year 1889", "1889", False, 2 * (1 / 3) * 1 / (1 / 3 + 1)),
        ("Paris, France", "France", False, 2 * 0.5 * 1.0 / 1.5),
        ("", "", True, 1.0),
        ("", "Paris", False, 0.0),
        ("an apple a day", "the apple", False, 2 * 0.5 * 1.0 / 1.5),
    ],
)
def test_squad_exact_match_and_f1(
    hypothesis: str, reference: str, em: bool, f1: float
) -> None:
    assert exact_match(hypothesis, reference) is em
    assert token_f1(hypothesis, reference) == pytest.approx(f1)


def test_qa_scores_take_the_best_acceptable_answer() -> None:
    metrics, rows = qa_scores(
        ["in 1889", "Gustave Eiffel"],
        ["1889", "Eiffel"],
        ["<speech> When?", "<speech> Who?"],
        answers=[["1889", "in 1889"], None],
    )
    assert rows[0]["exact_match"] is True
    assert rows[1]["token_f1"] == pytest.approx(token_f1("Gustave Eiffel", "Eiffel"))
    assert metrics["exact_match"] == pytest.approx(50.0)
    assert "choice" not in metrics


def test_language_adherence_flags_the_wrong_language() -> None:
    hyps = [
        "The old dog saw a small bird in the garden this morning.",
        "Der alte Hund sah heute Morgen einen kleinen Vogel im Garten.",
        "Le vieux chien a vu un petit oiseau dans le jardin ce matin.",
        "El perro viejo vio un pájaro pequeño en el jardín esta mañana.",
        "The old dog saw a small bird in the garden this morning.",  # should be German
        "",
    ]
    expected = ["en", "de", "fr", "es", "de", "fr"]
    metrics, detected = adherence(hyps, expected)
    assert detected == ["en", "de", "fr", "es", "en", "empty"]
    assert metrics["rate"] == pytest.approx(100 * 4 / 6)
    assert metrics["confusion"]["de"] == {"de": 1, "en": 1}
    assert metrics["confusion"]["fr"] == {"empty": 1, "fr": 1}

    _, none = adherence(["Hello there."], [None])
    assert none == [None]
    assert (
        detect_language("Guten Morgen, wie geht es Ihnen heute?", ["en", "de"]) == "de"
    )
    assert (
        language_code("German")
        == language_code("deu")
        == language_code("de-AT")
        == "de"
    )

    with pytest.raises(LanguageIdentifierError, match="does not know"):
        detect_language("text", ["en", "klingon"])
    with pytest.raises(LanguageIdentifierError, match="at least two"):
        detect_language("text", ["en"])


def test_failure_signatures() -> None:
    loop = "the cat sat " * 6
    records = [
        {"hypothesis": "a b c d", "reference": "a b", "stop_reason": "eos"},
        {"hypothesis": "", "reference": "a b c d", "stop_reason": "eos"},
        {"hypothesis": "x y", "reference": "x y", "stop_reason": "repetition"},
        {"hypothesis": loop, "reference": "the cat sat", "stop_reason": "max_length"},
    ]
    metrics, rows = failure_signatures(records)
    assert metrics["empty_rate"] == 25.0
    assert metrics["repetition_stop_rate"] == 25.0
    assert metrics["max_length_rate"] == 25.0
    assert metrics["text_loop_rate"] == 25.0  # the guard was off for the last one
    assert metrics["loop_rate"] == 50.0
    assert metrics["length_ratio"] == pytest.approx((4 + 0 + 2 + 18) / (2 + 4 + 2 + 3))
    assert rows[0]["length_ratio"] == 2.0
    assert ends_in_text_loop("no no no") is False  # 3 copies of one word are fine
    assert ends_in_text_loop("I said " + "yes " * 8)
    # Chinese lengths count characters.
    zh, _ = failure_signatures(
        [
            {
                "hypothesis": "狗看见了鸟",
                "reference": "老狗看见了一只鸟",
                "target_lang": "zh",
                "stop_reason": "eos",
            }
        ]
    )
    assert zh["length_ratio"] == pytest.approx(5 / 8)


def test_score_texts_scores_a_no_translation_baseline_like_the_recipe() -> None:
    transcripts = ["The old dog saw a bird.", "The cat sleeps on the sofa."]
    translations = ["Der alte Hund sah einen Vogel.", "Die Katze schläft auf dem Sofa."]
    result = score_texts(
        "st", transcripts, translations, target_langs=["de", "de"], sources=transcripts
    )
    st = result["metrics"]["st/de"]
    assert st["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(transcripts, [translations]).score
    )
    adherence_de = result["metrics"]["failures"]["language_adherence"]
    assert adherence_de["confusion"] == {"de": {"en": 2}}  # the baseline is English
    assert adherence_de["rate"] == 0.0
    assert (
        result["metrics"]["failures"]["repetition_stop_rate"] is None
    )  # not generated
    assert result["versions"]["sacrebleu"] == sacrebleu.__version__
    assert [row["id"] for row in result["scores"]] == ["0", "1"]

    asr = score_texts("asr", ["hello world"], ["Hello, world!"], langs=["en"])
    assert asr["metrics"]["asr"]["wer"] == 0.0
    assert asr["metrics"]["asr"]["wer_raw"] == pytest.approx(100.0)

    text = render_summary(
        {"num_inputs": 2, "num_generated": 2, "num_skipped": 0, **result}
    )
    assert "| st/de | 2 |" in text
    assert "language adherence %" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "qa"}, "`task` must be one of"),
        ({"references": ["a", "b"]}, "same length"),
        ({"langs": ["en", "de"]}, "`lang` must give one value per hypothesis"),
        ({"task": "st"}, "needs `target_langs`"),
    ],
)
def test_score_texts_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "task": "asr",
        "hypotheses": ["a"],
        "references": ["a"],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        score_texts(**args)  # type: ignore[arg-type]


def test_the_scoring_section_is_validated() -> None:
    assert ScoringSection().validate().has_error() is False
    result = ScoringSection(language_candidates=["en", "xx-klingon"]).validate()
    assert result.has_error()
