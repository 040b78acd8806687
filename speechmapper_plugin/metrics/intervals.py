"""Confidence intervals for the numbers the project reports.

One place for them: a WER, chrF or accuracy without its sample size and
interval cannot tell a real difference from noise (a 1.4-point chrF gap on 200
sentences often can't). Corpus metrics (WER, BLEU, chrF) are ratios of sums
of per-utterance statistics, so they are bootstrapped over utterances by
resampling those statistics; a proportion (accuracy, adherence) gets a Wilson
score interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_RESAMPLES: Final = 1_000


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """A value measured on ``n`` items with its confidence interval."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE

    def format(self, digits: int = 1) -> str:
        """``34.0 [31.2, 36.9] (n=200)``."""
        return (
            f"{self.value:.{digits}f} [{self.low:.{digits}f}, "
            f"{self.high:.{digits}f}] (n={self.n})"
        )

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units (e.g. ×100 for percent)."""
        return Estimate(
            value=self.value * factor,
            low=self.low * factor,
            high=self.high * factor,
            n=self.n,
            confidence=self.confidence,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "confidence": self.confidence,
        }


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1), but is {confidence}.")


def bootstrap_resample_indices(
    n: int, *, num_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> NDArray[np.int64]:
    """``num_resamples`` × ``n`` item indices drawn with replacement."""
    if n < 1:
        raise ValueError("A bootstrap needs at least one item.")
    if num_resamples < 1:
        raise ValueError(f"`num_resamples` must be ≥ 1, but is {num_resamples}.")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(num_resamples, n))


def _percentile_estimate(
    value: float, resampled: ArrayLike, n: int, confidence: float
) -> Estimate:
    """The percentile interval of ``resampled`` around ``value``; resamples
    where the metric is undefined (NaN) are left out."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(
        np.asarray(resampled, dtype=np.float64), [tail, 1.0 - tail]
    )
    return Estimate(
        value=value, low=float(low), high=float(high), n=n, confidence=confidence
    )


def bootstrap_estimate(
    stats: ArrayLike,
    metric: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """A corpus metric with a percentile bootstrap interval over items.

    :param stats: ``(n, k)`` per-item sufficient statistics (e.g. word
        errors and reference words per utterance), or ``(n,)``.
    :param metric: maps summed statistics of shape ``(..., k)`` (or
        ``(...,)``) to the metric; it is called once on the whole corpus and
        once, vectorised, on all resamples.
    """
    _check_confidence(confidence)
    array = np.asarray(stats, dtype=np.float64)
    n = int(array.shape[0]) if array.ndim else 0
    indices = bootstrap_resample_indices(n, num_resamples=num_resamples, seed=seed)

    value = float(metric(array.sum(axis=0)))
    resampled = metric(array[indices].sum(axis=1))
    return _percentile_estimate(value, resampled, n, confidence)


def ratio_estimate(
    numerators: ArrayLike,
    denominators: ArrayLike,
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """Σ numerators / Σ denominators (a corpus WER: errors over reference
    words) with its bootstrap interval over items."""
    top = np.asarray(numerators, dtype=np.float64)
    bottom = np.asarray(denominators, dtype=np.float64)
    if top.shape != bottom.shape or top.ndim != 1:
        raise ValueError(
            f"Numerators {top.shape} and denominators {bottom.shape} must be two equal 1-d sequences."
        )

    def ratio(sums: NDArray[np.float64]) -> NDArray[np.float64]:
        # A resample without any denominator (no reference words) has no
        # rate: NaN, left out of the interval, not ±inf.
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.asarray(sums[..., 0] / sums[..., 1], dtype=np.float64)
        return np.where(sums[..., 1] == 0, np.nan, rates)

    return bootstrap_estimate(
        np.stack([top, bottom], axis=1),
        ratio,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
    )


def mean_estimate(
    values: ArrayLike,
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """The mean of per-item values (e.g. judge scores) with a bootstrap
    interval."""
    array = np.asarray(values, dtype=np.float64)
    return ratio_estimate(
        array,
        np.ones_like(array),
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
    )


def wilson_estimate(
    successes: int, n: int, *, confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """A proportion (accuracy, adherence) with its Wilson score interval,
    which stays inside [0, 1] and is honest at 0 % and 100 %."""
    _check_confidence(confidence)
    if n < 1:
        raise ValueError("A proportion needs at least one item.")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n} items.")

    z = _normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Estimate(
        value=p,
        # Exact at the ends (rounding leaves 1e-16 otherwise).
        low=0.0 if successes == 0 else max(0.0, centre - half),
        high=1.0 if successes == n else min(1.0, centre + half),
        n=n,
        confidence=confidence,
    )


def _normal_quantile(q: float) -> float:
    """The standard normal quantile (inverse CDF) by bisection on erf."""
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def paired_bootstrap_estimate(
    stats_a: ArrayLike,
    stats_b: ArrayLike,
    metric: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """``metric(a) − metric(b)`` of two systems on the same items, with a
    paired bootstrap interval: each resample draws the same items for both,
    so the item-to-item variation both share cancels (an interval of the
    difference, not two overlapping intervals).

    :param stats_a: ``(n, k)`` (or ``(n,)``) per-item statistics of system
        a; row ``i`` of ``stats_b`` must be the same item.
    :param metric: as for :func:`bootstrap_estimate`.
    """
    _check_confidence(confidence)
    a = np.asarray(stats_a, dtype=np.float64)
    b = np.asarray(stats_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim == 0:
        raise ValueError(
            f"Paired statistics must have the same shape (one row per shared item), but have {a.shape} and {b.shape}."
        )
    n = int(a.shape[0])
    indices = bootstrap_resample_indices(n, num_resamples=num_resamples, seed=seed)

    value = float(metric(a.sum(axis=0))) - float(metric(b.sum(axis=0)))
    resampled = np.asarray(
        metric(a[indices].sum(axis=1)), dtype=np.float64
    ) - np.asarray(metric(b[indices].sum(axis=1)), dtype=np.float64)
    return _percentile_estimate(value, resampled, n, confidence)
