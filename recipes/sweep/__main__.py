"""``python -m recipes.sweep OUT_DIR --config-file recipes/sweep/examples/sigma_llama3_1_8b.yaml``

Runs stage 2 for each σ (and stage 1 for each α) through the real recipes,
each into its own directory under OUT_DIR, evaluates each on held-out
prompts, and writes OUT_DIR/sweep.json and OUT_DIR/sweep.md (also printed).
Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipes.sweep.config import load_sweep_config
from recipes.sweep.execute import run_steps
from recipes.sweep.heldout import check_heldout_prompts
from recipes.sweep.plan import plan_runs, plan_steps
from recipes.sweep.table import write_sweep_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recipes.sweep", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--config-file", type=Path, required=True)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands, run nothing"
    )
    args = parser.parse_args(argv)

    try:
        config = load_sweep_config(args.config_file)
        assert config.evaluate.instructions is not None
        num_prompts = check_heldout_prompts(
            config.evaluate.instructions, config.train_instructions
        )
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2

    out_dir = args.out_dir.resolve()
    runs = plan_runs(config, out_dir)
    steps = plan_steps(config, runs)

    if args.dry_run:
        for step in steps:
            print(" ".join(step.command))
        return 0

    print(
        f"[sweep] {len(runs)} runs, {len(steps)} recipe steps; held-out file {config.evaluate.instructions}: {num_prompts} prompts, none used in training."
    )

    try:
        progress = run_steps(steps, out_dir)
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2

    paths = write_sweep_table(
        out_dir,
        runs,
        progress,
        metrics=config.evaluate.metrics,
        heldout={
            "instructions": str(config.evaluate.instructions),
            "num_prompts": num_prompts,
            "train_instructions": [str(p) for p in config.train_instructions],
        },
    )

    print(paths["table"].read_text())
    print(f"[sweep] wrote {paths['json']} and {paths['table']}")

    if progress.failed or progress.blocked:
        print(
            f"[sweep] {len(progress.failed)} step(s) failed, {len(progress.blocked)} not run; rerun to retry them.",
            file=sys.stderr,
        )
        return 1

    return 0


if __name__ == "__main__":
    sys.exit(main())
