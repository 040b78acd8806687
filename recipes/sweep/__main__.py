"""``python -m recipes.sweep OUT_DIR --config-file recipes/sweep/examples/sigma_llama3_1_8b.yaml``

Runs stage 2 for each σ (and stage 1 for each α) through the real recipes,
each into its own directory under OUT_DIR, evaluates each on held-out
prompts, and writes OUT_DIR/sweep.json and OUT_DIR/sweep.md (also printed).
Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from recipes.runs import Plan, metric_names, run_plan_command
from recipes.sweep.config import SweepConfig, load_sweep_config
from recipes.sweep.plan import plan_runs, plan_steps


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


def make_plan(config: SweepConfig, out_dir: Path) -> Plan:
    runs = plan_runs(config, out_dir)
    return Plan(
        summary=f"{len(runs)} runs",
        runs=runs,
        runs_key="runs",
        steps=plan_steps(config, runs),
        table=partial(format_table, metrics=config.evaluate.metrics),
    )


def main(argv: list[str] | None = None) -> int:
    return run_plan_command("sweep", __doc__, argv, load_sweep_config, make_plan)


if __name__ == "__main__":
    sys.exit(main())
