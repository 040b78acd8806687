"""The grid's table, shaped like Verdini et al.'s: one row per adapter, one
column per (SFM, LLM) pair, one table per metric (``grid.md``); every cell's
figures, directories and status in ``grid.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recipes.runs import metric_names


def _cell_text(record: Mapping[str, Any] | None, metric: str) -> str:
    if record is None:
        return "-"
    if record["status"] != "ok":
        return record["status"]
    value = record.get("metrics", {}).get(metric)
    return "-" if value is None else f"{value:.4g}"


def format_tables(records: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """One Markdown table per metric: adapters x (SFM, LLM)."""
    metrics = metric_names(records, metrics)

    pairs = list(dict.fromkeys((r["sfm"], r["llm"]) for r in records))
    adapters = list(dict.fromkeys(r["adapter"] for r in records))
    by_key = {(r["sfm"], r["adapter"], r["llm"]): r for r in records}

    sections = []
    for metric in metrics:
        header = ["adapter", *(f"{sfm} + {llm}" for sfm, llm in pairs)]
        lines = [
            f"### {metric}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * len(pairs),
        ]
        for adapter in adapters:
            cells = [
                _cell_text(by_key.get((sfm, adapter, llm)), metric)
                for sfm, llm in pairs
            ]
            lines.append("| " + " | ".join([adapter, *cells]) + " |")
        sections.append("\n".join(lines) + "\n")

    if not sections:
        return "No evaluation figures yet.\n"
    return "\n".join(sections)
