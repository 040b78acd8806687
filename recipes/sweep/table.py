"""The sweep's comparison table: ``sweep.json`` and ``sweep.md``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recipes.runs import metric_names


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def format_table(records: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """A Markdown table: one row per run, one column per metric."""
    metrics = metric_names(records, metrics)

    header = ["run", "α", "σ", *metrics, "status"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * len(metrics) + ["---"]) + "|",
    ]
    for record in records:
        values = record.get("metrics", {})
        cells = [
            record["name"],
            _format(record["alpha"]),
            _format(record["sigma"]),
            *(_format(values.get(m)) for m in metrics),
            record["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
