"""``summary.md``: the numbers of ``summary.json`` as readable tables.

A metric with an interval (``<name>_ci`` beside it in ``summary.json``) is
shown as ``34.00 [31.20, 36.90]``: its 95 % interval over the ``n`` of its
row, so two runs' figures can be told apart from noise."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_HEADLINE = (
    ("wer", "WER %"),
    ("cer", "CER %"),
    ("wer_raw", "WER raw %"),
    ("cer_raw", "CER raw %"),
    ("bleu", "BLEU"),
    ("chrf", "chrF"),
    ("exact_match", "EM %"),
    ("token_f1", "F1 %"),
)

_FAILURES = (
    ("language_adherence", "language adherence %"),
    ("loop_rate", "loop %"),
    ("repetition_stop_rate", "repetition stop %"),
    ("text_loop_rate", "text loop %"),
    ("max_length_rate", "max length %"),
    ("empty_rate", "empty %"),
    ("length_ratio", "length ratio"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _fmt_ci(value: Any, interval: Any) -> str:
    """``value [low, high]`` when ``interval`` is an interval's dict."""
    if value is None or not isinstance(interval, Mapping):
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(interval.get('low'))}, {_fmt(interval.get('high'))}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _judge_cell(judge: Mapping[str, Any]) -> str:
    """``judge accuracy 40.00 % [11.76, 76.93] (n=5)`` or ``judge mean 3.50``."""
    accuracy = judge.get("accuracy")
    if isinstance(accuracy, Mapping):
        return (
            f"judge accuracy {_fmt(accuracy.get('value'))} % "
            f"[{_fmt(accuracy.get('low'))}, {_fmt(accuracy.get('high'))}] "
            f"(n={accuracy.get('n')})"
        )
    if judge.get("mode") == "accuracy":
        return "judge accuracy – (no valid verdict)"
    return f"judge mean {_fmt(judge.get('mean_score'))}"


def render_summary(summary: Mapping[str, Any]) -> str:
    """Metrics, failure signatures, then everything that pins the numbers."""
    metrics: Mapping[str, Any] = summary.get("metrics", {})
    lines = ["# Evaluation summary", ""]

    lines.append(
        f"{summary.get('num_generated')} of {summary.get('num_inputs')} examples generated, "
        f"{summary.get('num_skipped')} skipped"
        + (
            f" ({_fmt(summary.get('skipped_by_reason'))})"
            if summary.get("num_skipped")
            else ""
        )
        + "."
    )
    lines.append("")

    groups = [g for g in metrics if not g.startswith("failures")]
    if groups:
        columns = [
            (k, name) for k, name in _HEADLINE if any(k in metrics[g] for g in groups)
        ]
        rows = []
        for g in groups:
            values = metrics[g]
            row = [g, _fmt(values.get("num_examples"))]
            row += [_fmt_ci(values.get(k), values.get(f"{k}_ci")) for k, _ in columns]
            extra = []
            if isinstance(values.get("comet"), Mapping):
                extra.append(f"COMET {_fmt(values['comet'].get('score'))}")
            if isinstance(values.get("choice"), Mapping):
                extra.append(
                    f"choice accuracy {_fmt(values['choice'].get('accuracy'))}%"
                )
            if isinstance(values.get("judge"), Mapping):
                extra.append(_judge_cell(values["judge"]))
            row.append(", ".join(extra) or "")
            rows.append(row)
        lines += ["## Metrics", ""]
        lines += _table(["group", "n", *(name for _, name in columns), "other"], rows)
        lines.append("")

    failure_groups = [g for g in metrics if g.startswith("failures")]
    if failure_groups:
        rows = []
        for g in failure_groups:
            values = metrics[g]
            row = [g, _fmt(values.get("num_examples"))]
            for key, _ in _FAILURES:
                value = values.get(key)
                if key == "language_adherence" and isinstance(value, Mapping):
                    row.append(_fmt_ci(value.get("rate"), value.get("rate_ci")))
                    continue
                row.append(_fmt(value))
            rows.append(row)
        lines += ["## Failure signatures", ""]
        lines += _table(["group", "n", *(name for _, name in _FAILURES)], rows)
        lines.append("")
        adherence = metrics["failures"].get("language_adherence", {})
        if adherence.get("confusion"):
            lines.append(
                "Language confusion (expected -> detected): "
                + "; ".join(
                    f"{want} -> "
                    + ", ".join(f"{got} {n}" for got, n in got_counts.items())
                    for want, got_counts in adherence["confusion"].items()
                )
                + "."
            )
            lines.append("")

    lines += ["## What produced these numbers", ""]
    for key in (
        "source",
        "models",
        "checkpoint_step",
        "prompts",
        "generation",
        "seed",
        "scoring",
        "judge",
        "versions",
        "signatures",
    ):
        if key in summary:
            lines.append(
                f"- **{key}**: `{json.dumps(summary[key], ensure_ascii=False, sort_keys=True)}`"
            )
    lines.append("")
    return "\n".join(lines)
