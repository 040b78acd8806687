"""Two systems on the same test items: the difference of their WER, BLEU and
chrF with a paired bootstrap interval.

Two intervals that overlap do not show that a difference is noise: most of
their width is which items happen to be in the test set, and both systems
share that. Resampling the same items for both (on the per-utterance
statistics the scorer already uses) leaves only the variation of the
difference itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from speechmapper_plugin.data.instructions.prompts import language_code
from speechmapper_plugin.evaluation.asr import asr_scores, percent_rate
from speechmapper_plugin.evaluation.failures import reference_text
from speechmapper_plugin.evaluation.translation import (
    score_of_statistics,
    sentence_statistics,
    translation_metrics,
)
from speechmapper_plugin.metrics.intervals import paired_bootstrap_estimate

Record = Mapping[str, Any]


def paired_differences(
    records_a: Sequence[Record],
    records_b: Sequence[Record],
    *,
    default_lang: str = "en",
) -> dict[str, Any]:
    """``a − b`` per group, over the items both scored (matched by ``id``).

    Records are lines of ``hypotheses.jsonl`` with a ``reference``; ``asr``
    records give ``{"asr": {"wer": ...}}`` (after Whisper's normaliser, as
    the summaries' ``wer``), ``st`` records ``{"st/<lang>": {"bleu": ...,
    "chrf": ...}}``, each an interval's dict with ``n`` the shared items.

    :raises ValueError: when the runs share no scored item.
    """
    by_id_b = {str(r["id"]): r for r in records_b if r.get("reference")}
    pairs = [
        (a, by_id_b[str(a["id"])])
        for a in records_a
        if a.get("reference") and str(a["id"]) in by_id_b
    ]
    if not pairs:
        raise ValueError(
            "The two runs share no scored item (same `id`, with a reference); a paired comparison needs the same test items."
        )

    result: dict[str, Any] = {}
    asr = [(a, b) for a, b in pairs if a.get("task") == "asr"]
    if asr:
        refs = [reference_text(a) for a, _ in asr]
        langs = [str(a.get("lang") or default_lang) for a, _ in asr]
        stats = []
        for side in (0, 1):
            hyps = [str(pair[side]["hypothesis"]) for pair in asr]
            per_utt = asr_scores(refs, hyps, langs)[1]
            stats.append([(u["word_errors"], u["reference_words"]) for u in per_utt])
        if sum(words for _, words in stats[0]):
            wer = paired_bootstrap_estimate(stats[0], stats[1], percent_rate)
            result["asr"] = {"wer": wer.to_dict()}

    st = [(a, b) for a, b in pairs if a.get("task") == "st"]
    targets = [language_code(str(a.get("target_lang") or "und")) for a, _ in st]
    for code in sorted(set(targets)):
        part = [pair for pair, t in zip(st, targets, strict=True) if t == code]
        refs = [reference_text(a) for a, _ in part]
        group = {}
        for name, metric in translation_metrics(code).items():
            a_stats, b_stats = (
                sentence_statistics(
                    metric, [str(p[side]["hypothesis"]) for p in part], refs
                )
                for side in (0, 1)
            )
            estimate = paired_bootstrap_estimate(
                a_stats, b_stats, score_of_statistics(metric)
            )
            group[name] = estimate.to_dict()
        result[f"st/{code}"] = group
    return result
