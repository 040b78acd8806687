"""``python -m speechmapper_plugin.quickstart.retarget QUICKSTART_OUT [--small]``

Does retargeting a projector to another LLM pay (issue 22)? On a finished
quickstart run (its toy world, cached speech features and stage-1 projector
for the 64-d toy LLM), a second toy LLM of another width is trained on the
same text, and stage 1 for it runs twice with the same seed, data and
schedule: from scratch (the control), and warm-started from the quickstart's
projector (``warm_start.checkpoint``). Both are validated on the held-out
voice (the test split) and the dev voice. The tables
(``QUICKSTART_OUT/retarget/<variant>.md``, and ``.json``) give the
``mse_word`` of both at each validated step and the steps each needs to reach
the from-scratch run's final value, held-out (test) first, then dev: choose
between warm-start variants (``--variant`` with ``--freeze-loaded-steps`` /
``--keep-fresh``, all against the one control) on dev and report test.
``--seed N`` reruns both stage-1 runs with another seed into
``retarget/seed<N>/`` (the second LLM is shared). A run made with other
options is never reused as it is: each step records its options, and a call
that differs stops with an error. Not part of the quickstart's time budget: a
command of its own.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.quickstart.assets import LLM_CARD
from speechmapper_plugin.quickstart.commands import find_repo_root, yaml_value
from speechmapper_plugin.quickstart.layout import (
    QuickstartError,
    QuickstartLayout,
    claim_options,
    write_result_files,
)
from speechmapper_plugin.quickstart.run import threads_of_the_steps
from speechmapper_plugin.quickstart.steps import StepRunner, subprocess_env
from speechmapper_plugin.quickstart.summary import HELDOUT_SPLIT, read_jsonl
from speechmapper_plugin.quickstart.world import read_world

DEV_SPLIT: Final = "dev"

SECOND_LLM_CARD: Final = "quickstart_toy_llm_retarget"

RUNS: Final = ("scratch", "retargeted")


@dataclass(frozen=True, kw_only=True)
class RetargetSize:
    llm_steps: int
    """Training steps of the second toy LLM."""

    stage1_steps: int
    """Stage-1 steps of both runs for the second LLM."""

    num_validations: int = 10
    """Validations after the start (every ``stage1_steps / num_validations``)."""


DEFAULT_SIZE: Final = RetargetSize(llm_steps=3000, stage1_steps=3000)
"""The quickstart's default LLM and stage-1 steps."""

SMALL_SIZE: Final = RetargetSize(llm_steps=1200, stage1_steps=400)
"""The quickstart's ``--small`` ones."""


@dataclass(frozen=True, kw_only=True)
class RetargetOptions:
    quickstart_dir: Path
    size: RetargetSize
    width: int = 96
    """The second LLM's embedding width (the toy LLM's is 64)."""
    freeze_loaded_steps: int = 0
    """``warm_start.freeze_loaded_steps`` of the retargeted run."""
    keep_fresh: tuple[str, ...] = ()
    """``warm_start.keep_fresh`` of the retargeted run."""
    variant: str = "retargeted"
    """The retargeted run's name: its directory ``stage1_<variant>`` and its
    results ``<variant>.json`` / ``.md`` (one from-scratch control serves
    every variant)."""
    seed: int = 0


def parse_options(argv: Sequence[str] | None = None) -> RetargetOptions:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.quickstart.retarget",
        description="Stage 1 for a second toy LLM of another width, from scratch vs retargeted from the quickstart's projector, on the quickstart's cached features.",
    )
    parser.add_argument(
        "quickstart_dir", type=Path, help="a quickstart output directory"
    )
    parser.add_argument("--small", action="store_true", help="the --small sizes")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--llm-steps", type=int)
    parser.add_argument("--stage1-steps", type=int)
    parser.add_argument("--freeze-loaded-steps", type=int, default=0)
    parser.add_argument(
        "--keep-fresh",
        action="append",
        default=[],
        metavar="REGEX",
        help="warm_start.keep_fresh of the retargeted run (repeatable)",
    )
    parser.add_argument(
        "--variant",
        default="retargeted",
        help="name of the retargeted run (its directory and result files), to compare several warm starts with one control",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="common.seed of both stage-1 runs; not 0: their own directory retarget/seed<N>/",
    )
    args = parser.parse_args(argv)
    size = SMALL_SIZE if args.small else DEFAULT_SIZE
    if args.llm_steps is not None:
        size = replace(size, llm_steps=args.llm_steps)
    if args.stage1_steps is not None:
        size = replace(size, stage1_steps=args.stage1_steps)
    if size.stage1_steps % (10 * size.num_validations) != 0:
        parser.error(
            f"--stage1-steps must be a multiple of {10 * size.num_validations} (validations on fairseq2's 10-step metric grid)."
        )
    if args.width < 2 or args.width % 2:
        parser.error("--width must be even (the toy LLM has two heads).")
    if args.variant == "scratch" or not re.fullmatch(r"[\w.-]+", args.variant):
        parser.error(
            "--variant must be a file name (letters, digits, `_`, `.`, `-`) other than `scratch`."
        )
    return RetargetOptions(
        quickstart_dir=args.quickstart_dir.expanduser().absolute(),
        size=size,
        width=args.width,
        freeze_loaded_steps=args.freeze_loaded_steps,
        keep_fresh=tuple(args.keep_fresh),
        variant=args.variant,
        seed=args.seed,
    )


def run_retarget(options: RetargetOptions) -> dict[str, Any]:
    """Train the second LLM, run both stage-1 runs and write the table.

    :raises QuickstartError: if the quickstart's stage 1 has not finished in
        ``options.quickstart_dir``, or a step fails.
    """
    layout = QuickstartLayout(options.quickstart_dir)
    if not layout.is_done("stage1"):
        raise QuickstartError(
            f"{layout.root} holds no finished quickstart stage 1; run `python -m speechmapper_plugin.quickstart {layout.root}` (with the same --small) first."
        )
    root = layout.root / "retarget"
    cards = root / "cards"
    dirs = run_dirs(layout, options)
    repo = find_repo_root()
    echo = partial(print, flush=True)
    env = subprocess_env(repo)
    runner = StepRunner(
        logs=root / "logs",
        num_steps=3,
        env=env,
        cwd=repo,
        echo=echo,
    )

    llm_file = cards / "second_llm.yaml"
    claim_options(
        root / "second_llm.options.json",
        {"width": options.width, "llm_steps": options.size.llm_steps},
        what="The second toy LLM",
        remedy=f"give the same --width and --llm-steps, or remove {root} to start over",
        outputs=root / "second_llm",
    )
    if not llm_file.is_file():
        # As the quickstart trains its toy LLM: on the recipe steps' threads
        # (one unless chosen), not on every core (which spin against each
        # other on a shared machine: 20x slower measured).
        with threads_of_the_steps(env):
            runner.call(
                "llm",
                f"Training a second toy LLM, {options.width}-d, on the same text ({options.size.llm_steps} steps)",
                lambda: _train_second_llm(layout, options, llm_file),
            )

    for run in RUNS:
        out = dirs[run]
        record = out.with_name(f"{out.name}.options.json")
        claim_options(
            record,
            run_options(options, run),
            what=f"The stage-1 run {out}",
            remedy=f"give the same options, another --variant or --seed, or remove {out} and {record.name} to make it again",
            outputs=out,
        )
        if (out / "metrics" / "valid" / f"{HELDOUT_SPLIT}.jsonl").is_file():
            continue
        what = (
            "from scratch (control)"
            if run == "scratch"
            else f"retargeted from the quickstart's projector ({options.variant})"
        )
        runner.run(
            f"stage1_{run if run == 'scratch' else options.variant}",
            f"Stage 1 for the second LLM, {what}: {options.size.stage1_steps} steps",
            _stage1_command(repo, layout, options, out, cards, run),
        )

    # Choose between variants on dev; the held-out test split is the result.
    result = {
        split: compare(
            {
                run: read_jsonl(dirs[run] / "metrics" / "valid" / f"{split}.jsonl")
                for run in RUNS
            },
            split,
        )
        for split in (HELDOUT_SPLIT, DEV_SPLIT)
    }
    result["task_seconds"] = {run: task_seconds(dirs[run]) for run in RUNS}
    result["options"] = {
        "variant": options.variant,
        "width": options.width,
        "llm_steps": options.size.llm_steps,
        "stage1_steps": options.size.stage1_steps,
        "freeze_loaded_steps": options.freeze_loaded_steps,
        "keep_fresh": list(options.keep_fresh),
        "seed": options.seed,
    }
    write_result_files(
        dirs["scratch"].parent, options.variant, result, format_result(result) + "\n"
    )
    return result


def run_dirs(layout: QuickstartLayout, options: RetargetOptions) -> dict[str, Path]:
    """The two stage-1 runs' output directories: ``retarget/`` for seed 0,
    ``retarget/seed<N>/`` for another seed (with its result files); the
    second LLM is shared by every seed (part of the world, as the first)."""
    root = layout.root / "retarget"
    if options.seed != 0:
        root = root / f"seed{options.seed}"
    return {
        "scratch": root / "stage1_scratch",
        "retargeted": root / f"stage1_{options.variant}",
    }


def run_options(options: RetargetOptions, run: str) -> dict[str, Any]:
    """What makes a stage-1 run what it is: a finished (or interrupted) run
    made with other values must not be taken for this one."""
    made: dict[str, Any] = {
        "seed": options.seed,
        "width": options.width,
        "llm_steps": options.size.llm_steps,
        "stage1_steps": options.size.stage1_steps,
    }
    if run == "retargeted":
        made["freeze_loaded_steps"] = options.freeze_loaded_steps
        made["keep_fresh"] = list(options.keep_fresh)
    return made


_TASK_TIME: Final = re.compile(r"Task finished in (\d+) second")


def task_seconds(run_dir: Path) -> int | None:
    """fairseq2's own time of a stage-1 run (``Task finished in N
    second(s)``, from the rank-0 log): the training and validation, without
    the process start, which the shared machine stretches."""
    for log in sorted(run_dir.glob("logs/rank_0*.log")):
        found = _TASK_TIME.findall(log.read_text(errors="replace"))
        if found:
            return int(found[-1])
    return None


def _train_second_llm(
    layout: QuickstartLayout, options: RetargetOptions, card_file: Path
) -> None:
    from speechmapper_plugin.quickstart.assets import LLM_LOG_EVERY
    from speechmapper_plugin.tiny_assets import write_card_file
    from speechmapper_plugin.tiny_assets.text_llm import (
        TOY_LLM_DIMS,
        ToyLLMTrainingConfig,
        train_toy_llm,
    )

    world = read_world(layout)
    result = train_toy_llm(
        layout.root / "retarget" / "second_llm",
        world.train,
        card_name=SECOND_LLM_CARD,
        config=ToyLLMTrainingConfig(steps=options.size.llm_steps),
        dims=replace(TOY_LLM_DIMS, model_dim=options.width),
        log=lambda line: print(f"      {line}", flush=True),
        log_every=LLM_LOG_EVERY,
    )
    write_card_file(card_file, [result.llm.card])


def _stage1_command(
    repo: Path,
    layout: QuickstartLayout,
    options: RetargetOptions,
    out: Path,
    cards: Path,
    run: str,
) -> list[str]:
    """The quickstart's stage-1 command for the second LLM; the retargeted
    run adds the warm start, and nothing else differs."""
    steps = options.size.stage1_steps
    splits = {s: [str(layout.features(s))] for s in ("train", "dev", "test")}
    overrides = [
        f"target_llm.name={SECOND_LLM_CARD}",
        f"model.config_overrides.output_dim={options.width}",
        f"dataset.config_overrides.splits={yaml_value(splits)}",
        "dataset.train_split=train",
        f"dataset.valid_splits={yaml_value(['dev', HELDOUT_SPLIT])}",
        f"regime.num_steps={steps}",
        "regime.publish_metrics_every_n_steps=10",
        "regime.validate_at_start=true",
        f"regime.validate_every_n_steps={steps // options.size.num_validations}",
        f"regime.checkpoint_every_n_steps={steps}",
        f"common.seed={options.seed}",
        f"common.assets.extra_paths={yaml_value([str(layout.cards), str(cards)])}",
        "common.no_sweep_dir=true",
    ]
    if run == "retargeted":
        overrides += [
            f"warm_start.checkpoint={yaml_value(str(layout.stage1))}",
            f"warm_start.freeze_loaded_steps={options.freeze_loaded_steps}",
            f"warm_start.keep_fresh={yaml_value(list(options.keep_fresh))}",
        ]
    config = repo / "recipes" / "stage1" / "configs" / "quickstart.yaml"
    return [
        sys.executable,
        "-m",
        "recipes.stage1",
        str(out),
        "--config-file",
        str(config),
        "--config",
        *overrides,
        "--no-rich",
    ]


def compare(
    valid: dict[str, list[dict[str, Any]]], split: str = HELDOUT_SPLIT
) -> dict[str, Any]:
    """``split``'s ``mse_word`` of both runs per validated step, the target
    (the from-scratch run's final value) and the first step each reaches it
    at (``None``: never)."""
    curves = {
        run: {int(r["Step"]): float(r["mse_word"]) for r in records}
        for run, records in valid.items()
    }
    scratch = curves["scratch"]
    target = scratch[max(scratch)]

    def reached(curve: dict[int, float]) -> int | None:
        return next((s for s in sorted(curve) if curve[s] <= target), None)

    steps = sorted(set(scratch) & set(curves["retargeted"]))
    return {
        "heldout_split": split,
        "target_mse_word": target,
        "steps_to_target": {run: reached(curve) for run, curve in curves.items()},
        "mse_word": [
            {"step": s, **{run: curves[run][s] for run in RUNS}} for s in steps
        ],
        "source": {"llm": LLM_CARD},
    }


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of :func:`compare`'s result."""
    reach = result["steps_to_target"]
    lines = [
        f"Held-out ({result['heldout_split']} voice) `mse_word` of stage 1 for the second toy LLM; target: the from-scratch run's final value, {result['target_mse_word']:.4f}.",
        "",
        f"Steps to reach it: from scratch {reach['scratch']}, retargeted {reach['retargeted']}.",
        "",
        "| step | from scratch | retargeted |",
        "|---:|---:|---:|",
    ]
    for row in result["mse_word"]:
        lines.append(
            f"| {row['step']} | {row['scratch']:.4f} | {row['retargeted']:.4f} |"
        )
    return "\n".join(lines)


def format_result(result: dict[str, Any]) -> str:
    """The held-out table, then dev's (on which variants are chosen), then
    each run's fairseq2 task time."""
    seconds = result["task_seconds"]
    return "\n\n".join(
        [
            format_table(result[HELDOUT_SPLIT]),
            format_table(result[DEV_SPLIT]),
            f"fairseq2 task time: from scratch {seconds['scratch']} s, retargeted {seconds['retargeted']} s.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        result = run_retarget(options)
    except QuickstartError as ex:
        print(f"The retarget experiment stopped: {ex}", file=sys.stderr)
        return 1
    print()
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
