"""Sample sizes and 95 % intervals in the evaluation's summaries: WER, BLEU
and chrF bootstrapped over utterances, adherence by Wilson, and the paired
difference of two systems on the same items; each checked against an
independent reference (sacreBLEU's own corpus score and bootstrap, jiwer,
published Wilson values, the normal approximation)."""

from __future__ import annotations

import math
import random
from typing import Any

import jiwer
import numpy as np
import pytest
import sacrebleu

from speechmapper_plugin.evaluation import (
    asr_scores,
    render_summary,
    score_texts,
    translation_scores,
)
from speechmapper_plugin.evaluation.compare import paired_differences
from speechmapper_plugin.evaluation.failures import adherence_intervals
from speechmapper_plugin.generation_task.summary import format_summary
from speechmapper_plugin.metrics.intervals import (
    bootstrap_estimate,
    paired_bootstrap_estimate,
)

WORDS = "le chat noir mange la souris grise près du jardin une petite maison".split()


def _corpus(n: int, keep: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """References and hypotheses with each word kept with probability ``keep``."""
    rng = random.Random(seed)
    refs = [" ".join(rng.choices(WORDS, k=rng.randint(4, 12))) for _ in range(n)]
    hyps = [
        " ".join(w if rng.random() < keep else rng.choice(WORDS) for w in r.split())
        for r in refs
    ]
    return refs, hyps


def test_bleu_and_chrf_intervals_are_sacrebleus_score_and_bootstrap() -> None:
    refs, hyps = _corpus(200, keep=0.7)
    metrics, _ = translation_scores(hyps, refs, "fr")

    for name, metric in (("bleu", sacrebleu.BLEU()), ("chrf", sacrebleu.CHRF())):
        reference = metric.corpus_score(hyps, [refs], n_bootstrap=1000)
        ci = metrics[f"{name}_ci"]
        # The point value is sacreBLEU's corpus score, exactly.
        assert metrics[name] == reference.score == ci["value"], name
        assert ci["n"] == 200 and ci["confidence"] == 0.95
        assert ci["low"] < ci["value"] < ci["high"], (name, ci)
        # sacreBLEU's own bootstrap (its seed, its resamples) gives about the
        # same half-width.
        half = (ci["high"] - ci["low"]) / 2
        assert half == pytest.approx(reference._ci, rel=0.25), (name, half)


def test_wer_interval_matches_the_normal_approximation_and_shrinks_with_n() -> None:
    refs, hyps = _corpus(400, keep=0.75, seed=1)
    metrics, per_utt = asr_scores(refs, hyps, ["fr"] * len(refs))
    assert metrics["wer_raw"] == pytest.approx(100 * jiwer.wer(refs, hyps))
    ci = metrics["wer_ci"]
    assert ci["value"] == metrics["wer"] and ci["n"] == 400

    # Delta method for a ratio of sums: var(R) ≈ Σ (e_i − R·w_i)² / (Σ w_i)².
    errors = np.array([u["word_errors"] for u in per_utt], dtype=float)
    words = np.array([u["reference_words"] for u in per_utt], dtype=float)
    rate = errors.sum() / words.sum()
    sd = math.sqrt(((errors - rate * words) ** 2).sum()) / words.sum()
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(100 * 1.96 * sd, rel=0.2)

    small, _ = asr_scores(refs[:50], hyps[:50], ["fr"] * 50)
    assert small["wer_ci"]["n"] == 50
    width = small["wer_ci"]["high"] - small["wer_ci"]["low"]
    assert width > 2 * (ci["high"] - ci["low"])  # ≈ √8 × wider

    # No reference words: no rate, no interval; resamples of only such
    # utterances have no rate either and are left out (not inf).
    empty, _ = asr_scores([""], ["hello"], ["en"])
    assert empty["wer"] is None and empty["wer_ci"] is None
    mixed, _ = asr_scores(["", "a cat"], ["hello there", "a cat"], ["en", "en"])
    assert mixed["wer_ci"] == {
        "value": 100.0, "low": 0.0, "high": 100.0, "n": 2, "confidence": 0.95
    }  # fmt: skip


def test_adherence_intervals_are_wilsons() -> None:
    # Wilson 95 %: 8/10 → [0.4902, 0.9433] (Newcombe 1998, Table I).
    language = {"confusion": {"de": {"de": 8, "en": 2}, "fr": {"fr": 10}}}
    intervals = adherence_intervals(language)
    german = intervals["rate_ci_by_language"]["de"]
    assert german["value"] == pytest.approx(80.0)
    assert german["low"] == pytest.approx(49.02, abs=0.01)
    assert german["high"] == pytest.approx(94.33, abs=0.01)
    assert intervals["rate_ci"]["n"] == 20
    assert intervals["rate_ci"]["value"] == pytest.approx(90.0)
    assert adherence_intervals({"confusion": {}})["rate_ci"] is None

    # Through the scorer: the failure groups carry it.
    english = ["The old dog saw a small bird in the garden this morning."] * 3
    german_refs = ["Der alte Hund sah heute Morgen einen kleinen Vogel im Garten."] * 3
    result = score_texts("st", english, german_refs, target_langs=["de"] * 3)
    adherence = result["metrics"]["failures/st"]["language_adherence"]
    assert adherence["rate"] == 0.0
    assert adherence["rate_ci"]["n"] == 3
    assert adherence["rate_ci"]["high"] == pytest.approx(56.15, abs=0.01)  # 0/3


def test_paired_difference_is_narrower_than_either_interval() -> None:
    # Two systems scored on the same 300 items: item difficulty varies a lot
    # and is shared, the systems differ by 0.05 on average.
    rng = np.random.default_rng(3)
    difficulty = rng.uniform(0.2, 0.9, size=300)
    a = difficulty + rng.normal(0.05, 0.02, size=300)
    b = difficulty

    def mean(sums: np.ndarray) -> np.ndarray:
        return np.asarray(sums / 300.0)

    paired = paired_bootstrap_estimate(a, b, mean)
    assert paired.value == pytest.approx(a.mean() - b.mean())
    assert paired.n == 300
    # Normal approximation of a mean of differences.
    d = a - b
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert (paired.high - paired.low) / 2 == pytest.approx(half, rel=0.2)
    # The unpaired intervals are far wider and overlap; the paired one excludes 0.
    alone = bootstrap_estimate(a, mean)
    assert alone.high - alone.low > 5 * (paired.high - paired.low)
    assert paired.low > 0

    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap_estimate(a, b[:-1], mean)


def test_summaries_show_the_intervals() -> None:
    refs, hyps = _corpus(30, keep=0.8, seed=2)
    result = score_texts("asr", hyps, refs, langs=["fr"] * 30)
    ci = result["metrics"]["asr"]["wer_ci"]
    text = render_summary({"metrics": result["metrics"]})
    assert f"{ci['value']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]" in text

    st, _ = translation_scores(hyps, refs, "fr")
    line = format_summary(
        {
            "num_generated": 30,
            "num_inputs": 30,
            "num_skipped": 0,
            "skipped_by_reason": {},
            "stop_reasons": {"eos": 30},
            "metrics": {"asr": result["metrics"]["asr"], "st/fr": st},
        }
    )
    assert f"WER {ci['value']:.2f}% [{ci['low']:.2f}, {ci['high']:.2f}] over 30" in line
    bleu = st["bleu_ci"]
    assert f"BLEU {bleu['value']:.2f} [{bleu['low']:.2f}, {bleu['high']:.2f}]" in line


def test_paired_differences_of_two_runs_on_the_same_items() -> None:
    refs, good = _corpus(120, keep=0.85, seed=4)
    _, bad = _corpus(120, keep=0.6, seed=4)  # same references, more errors

    def records(hyps: list[str]) -> list[dict[str, Any]]:
        asr = [
            {
                "id": f"{i}_asr",
                "task": "asr",
                "lang": "fr",
                "reference": r,
                "hypothesis": h,
            }
            for i, (r, h) in enumerate(zip(refs, hyps, strict=True))
        ]
        st = [
            {
                "id": f"{i}_st",
                "task": "st",
                "target_lang": "fr",
                "reference": r,
                "hypothesis": h,
            }
            for i, (r, h) in enumerate(zip(refs, hyps, strict=True))
        ]
        return asr + st

    # Order does not matter: items are matched by id.
    result = paired_differences(records(good), list(reversed(records(bad))))
    wer_good = asr_scores(refs, good, ["fr"] * 120)[0]["wer"]
    wer_bad = asr_scores(refs, bad, ["fr"] * 120)[0]["wer"]
    assert result["asr"]["wer"]["value"] == pytest.approx(wer_good - wer_bad)
    assert result["asr"]["wer"]["high"] < 0  # clearly fewer errors
    chrf = result["st/fr"]["chrf"]
    assert chrf["value"] == pytest.approx(
        sacrebleu.corpus_chrf(good, [refs]).score
        - sacrebleu.corpus_chrf(bad, [refs]).score
    )
    assert chrf["n"] == 120 and chrf["low"] > 0
    # These two systems err independently (nothing shared to cancel), so the
    # difference's interval is about √2 × one system's, below the sum of both.
    widths = [
        translation_scores(hyps, refs, "fr")[0]["chrf_ci"] for hyps in (good, bad)
    ]
    width = chrf["high"] - chrf["low"]
    assert max(w["high"] - w["low"] for w in widths) < width
    assert width < sum(w["high"] - w["low"] for w in widths)

    with pytest.raises(ValueError, match="share no scored item"):
        paired_differences(records(good)[:1], records(bad)[1:2])
