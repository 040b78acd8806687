"""The quickstart from end to end: the toy world, a toy LLM that knows its
language, speech, stage 1, ASR-only stage 2 (σ = 0.9 and σ = 0), and the
evaluation of zero-shot speech translation against text references."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from speechmapper_plugin.quickstart.assets import (
    LLM_CARD,
    SFM_CARD,
    build_speech_encoder,
    build_toy_llm,
    llm_card,
)
from speechmapper_plugin.quickstart.commands import Commands, find_repo_root
from speechmapper_plugin.quickstart.evaluation import (
    SHUFFLED_INSTRUCTIONS,
    TEST_INSTRUCTIONS,
    run_toy_llm_eet,
    score_references,
    write_test_instructions,
)
from speechmapper_plugin.quickstart.layout import (
    SIGMAS,
    SPLITS,
    QuickstartError,
    QuickstartLayout,
    claim_options,
    prepare_out_dir,
)
from speechmapper_plugin.quickstart.options import QuickstartOptions, parse_options
from speechmapper_plugin.quickstart.steps import StepRunner, subprocess_env
from speechmapper_plugin.quickstart.summary import (
    HELDOUT_SPLIT,
    collect_summary,
    format_table,
    plot_stage1,
    stage1_validation,
    write_summary,
)
from speechmapper_plugin.quickstart.world import (
    read_world,
    synthesize_world,
    write_world,
)
from speechmapper_plugin.tiny_assets.speech import INSTALL_HINT, has_speech_synthesis

NUM_STEPS = 21
"""World, LLM, encoder, speech, 3 validations, 3 extractions, stage 1, 2
instruction files, 2 stage-2 runs, test instructions, 3 evaluations,
references, EET."""


def _check_resumable(layout: QuickstartLayout, record: dict[str, Any]) -> None:
    claim_options(
        layout.root / "options.json",
        record,
        what=f"The run in {layout.root}",
        remedy="rerun with `--fresh` to start over, or give the same options to resume it",
    )


@contextmanager
def threads_of_the_steps(env: dict[str, str]) -> Iterator[None]:
    """Run this process's own steps (toy LLM, references, EET) on as many
    threads as the recipe steps get (``OMP_NUM_THREADS`` of their
    environment, 1 unless chosen). PyTorch's CPU kernels may split a float
    sum differently on another number of threads, which rounds differently;
    pinned, the toy LLM (and every number after it) does not depend on the
    machine's core count."""
    import torch

    before = torch.get_num_threads()
    try:
        threads = int(env["OMP_NUM_THREADS"])
    except ValueError:
        threads = before
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_quickstart(options: QuickstartOptions) -> dict[str, Any]:
    """Run (or resume) every step into ``options.out_dir``; return the summary.

    :raises QuickstartError: on a missing prerequisite or a failed step (the
        message names the step's log).
    """
    if not has_speech_synthesis():
        raise QuickstartError(
            f"The quickstart synthesises its speech with espeak-ng and sox, which are not installed. {INSTALL_HINT}"
        )
    repo = find_repo_root()
    env = subprocess_env(repo)
    with threads_of_the_steps(env):
        return _run(options, repo, env)


def _run(options: QuickstartOptions, repo: Path, env: dict[str, str]) -> dict[str, Any]:
    # Progress lines print at once, also when stdout is a file or a pipe
    # (block-buffered otherwise: a long step would look stuck).
    echo = partial(print, flush=True)

    from speechmapper_plugin.data.instructions.__main__ import (
        main as instructions_main,
    )
    from speechmapper_plugin.data.validate_manifest import main as validate_main

    started = time.monotonic()
    size = options.size

    layout, resumed = prepare_out_dir(options.out_dir, fresh=options.fresh)
    record = {"seed": options.seed, **asdict(size)}
    _check_resumable(layout, record)
    if resumed:
        echo(f"Resuming the quickstart run in {layout.root} (`--fresh` starts over).")

    runner = StepRunner(
        logs=layout.logs,
        num_steps=NUM_STEPS,
        env=env,
        cwd=repo,
        echo=echo,
        layout=layout,
    )

    runner.call_once(
        "world",
        f"Drawing the toy world: {size.num_train} training, {size.num_dev} dev and {size.num_test} test sentences in English, French and German",
        lambda: write_world(
            layout, options.seed, size.num_train, size.num_dev, size.num_test
        ),
    )
    world = read_world(layout)

    runner.call_once(
        "llm",
        f"Training the toy LLM on text only ({size.llm_steps} steps): repeat, translate to French, translate to German",
        lambda: build_toy_llm(
            layout,
            world.train,
            steps=size.llm_steps,
            seed=options.seed,
            log=lambda line: echo(f"      {line}"),
        ),
    )
    card = llm_card(layout)

    runner.call_once(
        "encoder",
        "Building the tiny SeamlessM4T-v2 speech encoder (random, frozen) and its card",
        lambda: build_speech_encoder(layout, options.seed),
    )

    runner.call_once(
        "speech",
        "Speaking the English with espeak-ng (training voices; a new voice for dev, another for test)",
        lambda: synthesize_world(layout, world),
    )

    commands = Commands(repo, layout, sfm_card=SFM_CARD, llm_card=LLM_CARD)

    for split in SPLITS:
        runner.run_main(
            f"validate_{split}",
            f"Validating the {split} manifest",
            "speechmapper_plugin.data.validate_manifest",
            validate_main,
            commands.validate_manifest_args(split),
        )

    for split in SPLITS:
        runner.run(
            f"extract_{split}",
            f"Extracting {split} speech features (recipes.extract_features)",
            commands.extract_features(split),
        )

    runner.run(
        "stage1",
        f"Stage 1: {size.stage1_steps} steps, projector onto the toy LLM's embeddings, validated on held-out sentences and voices (recipes.stage1)",
        commands.stage1(size.stage1_steps, options.seed),
    )

    for split, pool in (("train", "train"), ("dev", "eval")):
        runner.run_main(
            f"instructions_{split}",
            f"Writing {split} ASR instructions ({pool} prompt pool)",
            "speechmapper_plugin.data.instructions",
            instructions_main,
            commands.instructions_args(split, pool, options.seed),
        )

    for run, sigma in SIGMAS.items():
        runner.run(
            f"stage2_{run}",
            f"Stage 2, transcription instructions only, σ = {sigma}: {size.stage2_steps} steps through the frozen toy LLM (recipes.stage2)",
            commands.stage2(run, sigma, size.stage2_steps, options.seed),
        )

    runner.call_once(
        "test_instructions",
        "Writing the test instructions: transcribe, translate to French, translate to German (held-out voice), and the shuffled-speech control",
        lambda: write_test_instructions(layout, world.test),
    )

    evaluations = [
        ("sigma09", "sigma09", TEST_INSTRUCTIONS, "σ = 0.9 on the test split"),
        ("sigma0", "sigma0", TEST_INSTRUCTIONS, "the σ = 0 ablation on the test split"),
        (
            "shuffled",
            "sigma09",
            SHUFFLED_INSTRUCTIONS,
            "σ = 0.9 on shuffled speech (control)",
        ),
    ]
    for name, run, instructions, what in evaluations:
        runner.run(
            f"evaluate_{name}",
            f"Evaluating {what} (recipes.evaluate)",
            commands.evaluate(
                run, layout.instructions(instructions), layout.evaluation(name)
            ),
        )

    runner.call_once(
        "references",
        "Scoring the text references: no-translation baseline and text upper bound (gold transcript embeddings + pads)",
        lambda: score_references(layout, world.test, card),
    )

    heldout_mse = float(stage1_validation(layout, HELDOUT_SPLIT)[-1]["mse_word"])
    eet_file = layout.eet / "eet.json"
    runner.call_once(
        "eet",
        "Measuring the toy LLM's embedding error threshold (EET), stage 1's held-out MSE marked",
        lambda: run_toy_llm_eet(
            layout,
            [s.en for s in world.test[: size.num_eet_sentences]],
            card,
            heldout_mse,
        ),
    )
    eet = json.loads(eet_file.read_text())
    eet_summary = {
        key: eet.get(key)
        for key in ("threshold_mse", "threshold_low", "threshold_high")
    }

    plot_stage1(layout)
    summary = collect_summary(
        layout, runner.records, time.monotonic() - started, eet_summary, record
    )
    if resumed:
        summary["timing"]["resumed"] = True
        summary["timing"]["total_s"] = round(
            sum(summary["timing"]["steps"].values()), 1
        )
    write_summary(layout, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)

    try:
        summary = run_quickstart(options)
    except QuickstartError as ex:
        print(f"The quickstart stopped: {ex}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "The quickstart was interrupted; rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130

    print()
    print(format_table(summary))
    return 0
