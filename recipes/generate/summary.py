"""The run summary: counts, stop reasons, and WER/BLEU where references exist.

A quick look for ``recipes.generate``; ``recipes.evaluate`` replaces these
metrics with the full set (normalised WER, chrF, COMET, QA, failure rates)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sacrebleu.metrics import BLEU

from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.evaluation.translation import bleu_tokenizer
from speechmapper_plugin.generation import StopReason
from speechmapper_plugin.metrics import word_errors

STOP_REASONS: tuple[StopReason, ...] = ("eos", "max_length", "repetition")


def summarize(
    records: Sequence[Mapping[str, Any]], skipped: Sequence[BadRow], num_inputs: int
) -> dict[str, Any]:
    """What ``summary.json`` holds.

    ``metrics`` has ``asr`` (WER in %, over examples of task ``asr`` with a
    reference) and ``st/<target_lang>`` (corpus BLEU per target language, over
    ``st`` examples with a reference).
    """
    stops = Counter(str(r["stop_reason"]) for r in records)

    return {
        "num_inputs": num_inputs,
        "num_generated": len(records),
        "num_skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(b.reason for b in skipped).items())),
        "stop_reasons": {reason: stops.get(reason, 0) for reason in STOP_REASONS},
        "tasks": dict(sorted(Counter(str(r.get("task")) for r in records).items())),
        "metrics": _metrics(records),
    }


def _metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    metrics: dict[str, dict[str, Any]] = {}

    asr = [r for r in records if r.get("task") == "asr" and r.get("reference")]
    if asr:
        errors, words = word_errors(
            [r["reference"] for r in asr], [r["hypothesis"] for r in asr]
        )
        metrics["asr"] = {
            "num_examples": len(asr),
            "wer": 100.0 * errors / words if words else None,
            "word_errors": errors,
            "reference_words": words,
        }

    st = [r for r in records if r.get("task") == "st" and r.get("reference")]
    for lang in sorted({str(r.get("target_lang")) for r in st}):
        group = [r for r in st if str(r.get("target_lang")) == lang]
        bleu = BLEU(tokenize=bleu_tokenizer(lang))
        score = bleu.corpus_score(
            [r["hypothesis"] for r in group], [[r["reference"] for r in group]]
        )
        metrics[f"st/{lang}"] = {"num_examples": len(group), "bleu": score.score}

    return metrics


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
                f"{name}: WER {values['wer']:.2f}% over {values['num_examples']} examples ({values['word_errors']} errors / {values['reference_words']} words)."
            )
        elif "bleu" in values:
            lines.append(
                f"{name}: BLEU {values['bleu']:.2f} over {values['num_examples']} examples."
            )
    return " ".join(lines)
