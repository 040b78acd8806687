"""The run summary: counts, stop reasons, and the metrics that need only a
reference text (WER/CER, BLEU/chrF).

The metrics are the evaluation's (:func:`~speechmapper_plugin.evaluation.reference_scores`),
so a name means the same in every summary: ``wer`` is the WER after
Whisper's normaliser, ``wer_raw`` the WER of the text as written.
``recipes.evaluate`` replaces them with the full set (the same plus COMET,
QA, the judge and failure rates). Each rate comes with ``num_examples`` and
its 95 % interval over examples (``wer_ci``, ``bleu_ci``, ``chrf_ci``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.evaluation import reference_scores
from speechmapper_plugin.generation import SEARCH_STOP_REASONS, StopReason

STOP_REASONS: tuple[StopReason, ...] = SEARCH_STOP_REASONS


def summarize(
    records: Sequence[Mapping[str, Any]], skipped: Sequence[BadRow], num_inputs: int
) -> dict[str, Any]:
    """What ``summary.json`` holds; ``metrics`` has ``asr`` (WER/CER over
    examples of task ``asr`` with a reference; per language too when there are
    several) and ``st/<target_lang>`` (corpus BLEU and chrF per target
    language, over ``st`` examples with a reference)."""
    stops = Counter(str(r["stop_reason"]) for r in records)

    return {
        "num_inputs": num_inputs,
        "num_generated": len(records),
        "num_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(b.reason for b in skipped).items())),
        "stop_reasons": {reason: stops.get(reason, 0) for reason in STOP_REASONS},
        "tasks": dict(sorted(Counter(str(r.get("task")) for r in records).items())),
        "metrics": reference_scores(records),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """One human-readable paragraph for the log."""
    stops = ", ".join(f"{k}: {v}" for k, v in summary["stop_reasons"].items())
    lines = [
        f"Generated {summary['num_generated']} of {summary['num_inputs']} examples; skipped {summary['num_skipped']}"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in summary['skipped_by_reason'].items())})"
            if summary["num_skipped"]
            else ""
        )
        + ".",
        f"Stop reasons: {stops}.",
    ]
    for name, values in summary["metrics"].items():
        if "wer" in values and values["wer"] is not None:
            lines.append(
                f"{name}: WER {values['wer']:.2f}%{_interval(values.get('wer_ci'))} over {values['num_examples']} examples ({values['word_errors']} errors / {values['reference_words']} words)."
            )
        elif "bleu" in values:
            lines.append(
                f"{name}: BLEU {values['bleu']:.2f}{_interval(values.get('bleu_ci'))}, chrF {values['chrf']:.2f}{_interval(values.get('chrf_ci'))} over {values['num_examples']} examples."
            )
    return " ".join(lines)


def _interval(interval: Mapping[str, Any] | None) -> str:
    """`` [low, high]`` (the 95 % interval), or nothing without one."""
    if not interval:
        return ""
    return f" [{interval['low']:.2f}, {interval['high']:.2f}]"
