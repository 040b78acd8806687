"""``python -m recipes.grid OUT_DIR --config-file recipes/grid/examples/verdini_asr.yaml``

Runs the SFM x adapter x LLM grid through the real recipes: feature extraction
once per SFM and manifest split (cached under OUT_DIR/features), stage 1
and/or stage 2 per cell, one evaluation per cell on held-out prompts, and
writes OUT_DIR/grid.json and OUT_DIR/grid.md (also printed). Rerunning skips
finished steps and resumes interrupted ones; with ``nproc > 1`` every recipe
runs under torchrun, as fairseq2 recipes do on a cluster.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from recipes.grid.config import load_grid_config
from recipes.grid.plan import plan_cells, plan_steps
from recipes.grid.table import format_tables
from recipes.grid.widths import read_widths, start_fairseq2
from recipes.runs import Plan, check_inputs, run_plan_command


def make_plan(config_file: Path, out_dir: Path, dry_run: bool) -> Plan:
    config = load_grid_config(config_file)
    heldout = check_inputs(config, dry_run=dry_run, label="grid")
    start_fairseq2(config.asset_paths)
    widths = read_widths(config)
    cells = plan_cells(config, out_dir)
    axes = f"{len(config.sfms)} SFM x {len(config.adapters)} adapter x {len(config.llms)} LLM"
    return Plan(
        summary=f"{axes} = {len(cells)} cells",
        runs=cells,
        runs_key="cells",
        steps=plan_steps(config, cells, out_dir, widths),
        heldout=heldout,
        table=partial(format_tables, metrics=config.evaluate.metrics),
    )


def main(argv: list[str] | None = None) -> int:
    return run_plan_command("grid", __doc__, argv, make_plan)


if __name__ == "__main__":
    sys.exit(main())
