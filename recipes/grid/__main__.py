"""``python -m recipes.grid OUT_DIR --config-file recipes/grid/examples/verdini_asr.yaml``

Runs the SFM x adapter x LLM grid through the real recipes: feature extraction
once per SFM and manifest split (cached under OUT_DIR/features), stage 1
and/or stage 2 per cell, one evaluation per cell on held-out prompts, and
writes OUT_DIR/grid.json and OUT_DIR/grid.md (also printed). Rerunning skips
finished steps and resumes interrupted ones; with ``nproc > 1`` every recipe
runs under torchrun, as fairseq2 recipes do on a cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipes.grid.config import load_grid_config
from recipes.grid.plan import plan_cells, plan_steps
from recipes.grid.table import write_grid_table
from recipes.grid.widths import read_widths, start_fairseq2
from recipes.sweep.execute import run_steps
from recipes.sweep.heldout import check_heldout_prompts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recipes.grid", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--config-file", type=Path, required=True)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands, run nothing"
    )
    args = parser.parse_args(argv)

    try:
        config = load_grid_config(args.config_file)
        assert config.evaluate.instructions is not None
        train_files = config.stage2.instructions.get(config.stage2.train_split, [])
        num_prompts = check_heldout_prompts(config.evaluate.instructions, train_files)
        start_fairseq2(config.asset_paths)
        widths = read_widths(config)
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2

    out_dir = args.out_dir.resolve()
    cells = plan_cells(config, out_dir)
    steps = plan_steps(config, cells, out_dir, widths)

    if args.dry_run:
        for step in steps:
            print(" ".join(step.command))
        return 0

    print(
        f"[grid] {len(config.sfms)} SFM x {len(config.adapters)} adapter x {len(config.llms)} LLM = {len(cells)} cells, {len(steps)} recipe steps; held-out file {config.evaluate.instructions}: {num_prompts} prompts."
    )

    try:
        progress = run_steps(steps, out_dir)
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2

    paths = write_grid_table(
        out_dir,
        cells,
        progress,
        metrics=config.evaluate.metrics,
        heldout={
            "instructions": str(config.evaluate.instructions),
            "num_prompts": num_prompts,
            "train_instructions": [str(p) for p in train_files],
        },
    )

    print(paths["table"].read_text())
    print(f"[grid] wrote {paths['json']} and {paths['table']}")

    if progress.failed or progress.blocked:
        print(
            f"[grid] {len(progress.failed)} step(s) failed, {len(progress.blocked)} not run; rerun to retry them.",
            file=sys.stderr,
        )
        return 1

    return 0


if __name__ == "__main__":
    sys.exit(main())
