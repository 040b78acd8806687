"""The sweep's comparison table: ``sweep.json`` and ``sweep.md``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from recipes.sweep.execute import SweepProgress
from recipes.sweep.plan import SweepRun

SWEEP_JSON = "sweep.json"
SWEEP_TABLE = "sweep.md"
SUMMARY_FILE = "summary.json"


def flatten_numbers(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested dicts, by dotted key (booleans left out)."""
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def last_validation(run_dir: Path) -> dict[str, dict[str, float]]:
    """The last record of each ``metrics/valid*/*.jsonl`` of a training run."""
    records: dict[str, dict[str, float]] = {}
    for path in sorted(run_dir.glob("metrics/valid*/*.jsonl")) + sorted(
        run_dir.glob("metrics/valid*.jsonl")
    ):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            name = str(path.relative_to(run_dir / "metrics").with_suffix(""))
            records[name] = flatten_numbers(json.loads(lines[-1]))
    return records


class PlannedRun(Protocol):
    """What a sweep run and a grid cell share: their step directories."""

    @property
    def stage1_dir(self) -> Path | None: ...

    @property
    def stage2_dir(self) -> Path | None: ...

    @property
    def eval_dir(self) -> Path: ...

    @property
    def model_dir(self) -> Path: ...


def outcome_record(run: PlannedRun, progress: SweepProgress) -> dict[str, Any]:
    """Status (with the problem, if any), step directories, evaluation
    metrics and last validation figures of a sweep run or a grid cell."""
    status = "ok"
    problem = None
    for path in (run.stage1_dir, run.stage2_dir, run.eval_dir):
        if path is None:
            continue
        if path in progress.failed:
            status, problem = "failed", f"{path}: {progress.failed[path]}"
            break
        if path in progress.blocked:
            status, problem = "not run", f"{path}: a step it needs failed"
            break

    record: dict[str, Any] = {
        "status": status,
        "stage1_dir": None if run.stage1_dir is None else str(run.stage1_dir),
        "stage2_dir": None if run.stage2_dir is None else str(run.stage2_dir),
        "eval_dir": str(run.eval_dir),
    }
    if problem is not None:
        record["problem"] = problem

    summary_path = run.eval_dir / SUMMARY_FILE
    if status == "ok" and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        metrics = summary.get("metrics", {})
        record["metrics"] = flatten_numbers(
            metrics if isinstance(metrics, dict) else {}
        )
    record["validation"] = last_validation(run.model_dir)
    return record


def metric_names(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> list[str]:
    """``metrics`` if given, else every metric some record has, in order."""
    if metrics:
        return list(metrics)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.get("metrics", {})))
    return list(names)


def run_record(run: SweepRun, progress: SweepProgress) -> dict[str, Any]:
    return {
        "name": run.name,
        "alpha": run.alpha,
        "sigma": run.sigma,
        **outcome_record(run, progress),
    }


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


def write_sweep_table(
    out_dir: Path,
    runs: Sequence[SweepRun],
    progress: SweepProgress,
    *,
    metrics: Sequence[str],
    heldout: Mapping[str, Any],
) -> dict[str, Path]:
    records = [run_record(run, progress) for run in runs]

    json_path = out_dir / SWEEP_JSON
    json_path.write_text(
        json.dumps({"heldout": dict(heldout), "runs": records}, indent=2) + "\n"
    )

    table_path = out_dir / SWEEP_TABLE
    table_path.write_text(format_table(records, metrics))

    return {"json": json_path, "table": table_path}
