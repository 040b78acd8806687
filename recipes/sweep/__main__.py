"""``python -m recipes.sweep OUT_DIR --config-file recipes/sweep/examples/sigma_llama3_1_8b.yaml``

Runs stage 2 for each σ (and stage 1 for each α) through the real recipes,
each into its own directory under OUT_DIR, evaluates each on held-out
prompts, and writes OUT_DIR/sweep.json and OUT_DIR/sweep.md (also printed).
Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import sys

from recipes.runs import check_inputs, error, execute_plan, parse_args, print_plan
from recipes.sweep.config import load_sweep_config
from recipes.sweep.plan import plan_runs, plan_steps
from recipes.sweep.table import write_sweep_table


def main(argv: list[str] | None = None) -> int:
    args = parse_args("python -m recipes.sweep", __doc__, argv)

    try:
        config = load_sweep_config(args.config_file)
        assert config.evaluate.instructions is not None
        heldout = check_inputs(
            config,
            config.evaluate.instructions,
            config.train_instructions,
            dry_run=args.dry_run,
            label="sweep",
        )
    except ValueError as ex:
        return error(ex)

    out_dir = args.out_dir.resolve()
    runs = plan_runs(config, out_dir)
    steps = plan_steps(config, runs)

    if args.dry_run:
        return print_plan(steps)

    print(
        f"[sweep] {len(runs)} runs, {len(steps)} recipe steps; held-out file {heldout.instructions}: {heldout.num_prompts} prompts, none used in training."
    )

    return execute_plan(
        "sweep",
        steps,
        out_dir,
        lambda progress: write_sweep_table(
            out_dir, runs, progress, metrics=config.evaluate.metrics, heldout=heldout
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
