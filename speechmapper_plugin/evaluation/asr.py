"""WER and CER with jiwer, corpus-level, on raw and on normalised text.

Corpus-level means the sum of edits over the sum of reference units (words or
characters), as ``jiwer.wer``/``jiwer.cer`` compute it over lists; an
utterance-average would weigh a two-word utterance like a fifty-word one.
Counts are kept per utterance so ranks and resumed runs can be summed, and
so each rate gets its 95 % interval by a bootstrap over utterances
(``wer_ci``: the same ratio of sums on resampled utterances).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from speechmapper_plugin.evaluation.normalizers import normalizer_for
from speechmapper_plugin.metrics.edits import EditCounts as EditCounts
from speechmapper_plugin.metrics.edits import Unit as Unit
from speechmapper_plugin.metrics.edits import corpus_edit_counts as corpus_edit_counts
from speechmapper_plugin.metrics.edits import edit_counts as edit_counts
from speechmapper_plugin.metrics.intervals import bootstrap_estimate


def percent_rate(sums: NDArray[np.float64]) -> NDArray[np.float64]:
    """100 × errors / reference units per row; NaN (no rate, left out of
    the interval) for a resample without reference units, where a plain
    ratio would give inf."""
    errors, units = sums[..., 0], sums[..., 1]
    safe = np.where(units > 0, units, 1.0)
    return np.asarray(np.where(units > 0, 100.0 * errors / safe, np.nan))


def rate_interval(per_utt: Sequence[EditCounts]) -> dict[str, Any] | None:
    """Σ errors / Σ reference units in %, with its bootstrap interval over
    utterances; ``None`` without reference units (no rate)."""
    if sum(c.reference_units for c in per_utt) == 0:
        return None
    stats = [(c.errors, c.reference_units) for c in per_utt]
    return bootstrap_estimate(stats, percent_rate).to_dict()


def asr_scores(
    references: Sequence[str], hypotheses: Sequence[str], langs: Sequence[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Corpus WER/CER (raw and Whisper-normalised) with their intervals
    (``wer_ci``, ``cer_ci``, ``wer_raw_ci``, ``cer_raw_ci``) and
    per-utterance counts.

    ``langs`` picks each pair's normaliser (English or basic); the summary
    names every normaliser used with its package version.

    :returns: the corpus metrics and one dict per utterance.
    """
    if len(langs) != len(references):
        raise ValueError(
            f"`langs` must give one language per reference ({len(references)}), but gives {len(langs)}."
        )

    normalizers = [normalizer_for(lang) for lang in langs]
    normalized_refs = [n(r) for n, r in zip(normalizers, references, strict=True)]
    normalized_hyps = [n(h) for n, h in zip(normalizers, hypotheses, strict=True)]

    counts = {
        "raw": {
            unit: corpus_edit_counts(references, hypotheses, unit)
            for unit in ("word", "char")
        },
        "normalized": {
            unit: corpus_edit_counts(normalized_refs, normalized_hyps, unit)
            for unit in ("word", "char")
        },
    }

    metrics: dict[str, Any] = {"num_examples": len(references)}
    for text, by_unit in counts.items():
        suffix = "" if text == "normalized" else "_raw"
        words, chars = by_unit["word"][0], by_unit["char"][0]
        metrics[f"wer{suffix}"] = words.rate()
        metrics[f"cer{suffix}"] = chars.rate()
        metrics[f"wer{suffix}_ci"] = rate_interval(by_unit["word"][1])
        metrics[f"cer{suffix}_ci"] = rate_interval(by_unit["char"][1])
        metrics[f"word_errors{suffix}"] = words.errors
        metrics[f"reference_words{suffix}"] = words.reference_units
        metrics[f"char_errors{suffix}"] = chars.errors
        metrics[f"reference_chars{suffix}"] = chars.reference_units
    metrics["normalizers"] = {
        n.name: n.version for n in sorted(set(normalizers), key=lambda n: n.name)
    }

    per_utt = []
    for i, normalizer in enumerate(normalizers):
        words, chars = (
            counts["normalized"]["word"][1][i],
            counts["normalized"]["char"][1][i],
        )
        raw_words = counts["raw"]["word"][1][i]
        per_utt.append(
            {
                "normalizer": normalizer.name,
                "normalized_reference": normalized_refs[i],
                "normalized_hypothesis": normalized_hyps[i],
                "word_errors": words.errors,
                "reference_words": words.reference_units,
                "char_errors": chars.errors,
                "reference_chars": chars.reference_units,
                "word_errors_raw": raw_words.errors,
                "reference_words_raw": raw_words.reference_units,
                "wer": words.rate(),
            }
        )

    return metrics, per_utt
