"""Confidence intervals against published values and their coverage."""

from __future__ import annotations

import numpy as np
import pytest

from speechmapper_plugin.metrics.intervals import (
    mean_estimate,
    ratio_estimate,
    wilson_estimate,
)


def test_wilson_matches_published_values() -> None:
    # Wilson score intervals, 95 %: 8/10 → [0.4902, 0.9433] and 0/20 →
    # [0, 0.1611] (Newcombe 1998, Table I; also statsmodels'
    # proportion_confint(method="wilson")).
    interval = wilson_estimate(8, 10)
    assert interval.value == pytest.approx(0.8)
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)

    zero = wilson_estimate(0, 20)
    assert zero.low == 0.0
    assert wilson_estimate(20, 20).high == 1.0
    assert zero.high == pytest.approx(0.1611, abs=1e-4)


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_estimate(11, 10)
    with pytest.raises(ValueError, match="at least one"):
        wilson_estimate(0, 0)


def test_ratio_bootstrap_covers_the_true_rate() -> None:
    # Utterances of 5..20 words, each word wrong with probability 0.3: the
    # 95 % interval of the corpus rate should cover 0.3 in about 95 % of
    # corpora (binomial 95 % range for 200 trials: 184..197).
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        words = rng.integers(5, 21, size=60)
        errors = rng.binomial(words, 0.3)
        estimate = ratio_estimate(errors, words, num_resamples=400, seed=trial)
        assert estimate.low <= estimate.value <= estimate.high
        covered += estimate.low <= 0.3 <= estimate.high
    assert 180 <= covered <= 199


def test_interval_narrows_with_more_items() -> None:
    rng = np.random.default_rng(0)
    small = mean_estimate(list(rng.normal(size=50)))
    large = mean_estimate(list(rng.normal(size=800)))
    assert small.n == 50 and large.n == 800
    # Width ∝ 1/√n: 4× narrower at 16× the items, within bootstrap noise.
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 3.0 < ratio < 5.3


def test_format_names_the_sample_size() -> None:
    assert wilson_estimate(8, 10).scaled(100).format() == "80.0 [49.0, 94.3] (n=10)"


def test_a_resample_without_denominator_is_left_out() -> None:
    # One utterance with reference words, one without: resamples of only the
    # empty one have no rate (NaN, left out), never inf.
    estimate = ratio_estimate([1.0, 3.0], [4.0, 0.0], num_resamples=200)
    assert estimate.value == pytest.approx(1.0)
    assert np.isfinite(estimate.low) and np.isfinite(estimate.high)
