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

from recipes.grid.config import load_grid_config
from recipes.grid.plan import plan_cells, plan_steps
from recipes.grid.table import write_grid_table
from recipes.grid.widths import read_widths, start_fairseq2
from recipes.runs import check_inputs, error, execute_plan, parse_args, print_plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args("python -m recipes.grid", __doc__, argv)

    try:
        config = load_grid_config(args.config_file)
        assert config.evaluate.instructions is not None
        heldout = check_inputs(
            config,
            config.evaluate.instructions,
            config.stage2_train_instructions(),
            dry_run=args.dry_run,
            label="grid",
        )
        start_fairseq2(config.asset_paths)
        widths = read_widths(config)
    except ValueError as ex:
        return error(ex)

    out_dir = args.out_dir.resolve()
    cells = plan_cells(config, out_dir)
    steps = plan_steps(config, cells, out_dir, widths)

    if args.dry_run:
        return print_plan(steps)

    print(
        f"[grid] {len(config.sfms)} SFM x {len(config.adapters)} adapter x {len(config.llms)} LLM = {len(cells)} cells, {len(steps)} recipe steps; held-out file {heldout.instructions}: {heldout.num_prompts} prompts."
    )

    return execute_plan(
        "grid",
        steps,
        out_dir,
        lambda progress: write_grid_table(
            out_dir, cells, progress, metrics=config.evaluate.metrics, heldout=heldout
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
