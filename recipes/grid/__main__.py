"""``python -m recipes.grid OUT_DIR --config-file recipes/grid/examples/verdini_asr.yaml``

Runs the SFM x adapter x LLM grid through the real recipes: feature extraction
once per SFM and manifest split (cached under OUT_DIR/features), per cell the
training runs of its protocol (LLM-free stage 1, stage 1 then stage 2, or a
fresh adapter trained by stage 2 alone), one evaluation per cell on held-out
prompts, and writes OUT_DIR/grid.json and OUT_DIR/grid.md (also printed). Rerunning skips
finished steps and resumes interrupted ones; with ``nproc > 1`` every recipe
runs under torchrun, as fairseq2 recipes do on a cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from recipes.grid.config import GridConfig, load_grid_config
from recipes.grid.plan import plan_cells, plan_steps, read_widths, start_fairseq2
from recipes.runs import Plan, metric_names, run_plan_command


def _cell_text(record: Mapping[str, Any] | None, metric: str) -> str:
    if record is None:
        return "-"
    if record["status"] != "ok":
        return record["status"]
    value = record.get("metrics", {}).get(metric)
    return "-" if value is None else f"{value:.4g}"


def format_tables(records: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """One Markdown table per metric, shaped like Verdini et al.'s: one row
    per adapter (and training protocol, when the grid compares several),
    one column per (SFM, LLM) pair."""
    metrics = metric_names(records, metrics)

    pairs = list(dict.fromkeys((r["sfm"], r["llm"]) for r in records))
    rows = list(dict.fromkeys((r["adapter"], r["protocol"]) for r in records))
    by_key = {(r["sfm"], r["adapter"], r["llm"], r["protocol"]): r for r in records}
    with_protocol = len({protocol for _, protocol in rows}) > 1

    sections = []
    for metric in metrics:
        labels = ["adapter", "protocol"] if with_protocol else ["adapter"]
        header = [*labels, *(f"{sfm} + {llm}" for sfm, llm in pairs)]
        lines = [
            f"### {metric}",
            "",
            "| " + " | ".join(header) + " |",
            "|---" * len(labels) + "|" + "---:|" * len(pairs),
        ]
        for adapter, protocol in rows:
            cells = [
                _cell_text(by_key.get((sfm, adapter, llm, protocol)), metric)
                for sfm, llm in pairs
            ]
            label = [adapter, protocol] if with_protocol else [adapter]
            lines.append("| " + " | ".join([*label, *cells]) + " |")
        sections.append("\n".join(lines) + "\n")

    if not sections:
        return "No evaluation figures yet.\n"
    return "\n".join(sections)


def make_plan(config: GridConfig, out_dir: Path) -> Plan:
    start_fairseq2(config.asset_paths)
    widths = read_widths(config)
    cells = plan_cells(config, out_dir)
    axes = f"{len(config.sfms)} SFM x {len(config.adapters)} adapter x {len(config.llms)} LLM x {len(config.protocols)} protocol"
    return Plan(
        summary=f"{axes} = {len(cells)} cells",
        runs=cells,
        runs_key="cells",
        steps=plan_steps(config, cells, out_dir, widths),
        table=partial(format_tables, metrics=config.evaluate.metrics),
    )


def main(argv: list[str] | None = None) -> int:
    return run_plan_command("grid", __doc__, argv, load_grid_config, make_plan)


if __name__ == "__main__":
    sys.exit(main())
