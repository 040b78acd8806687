"""The quickstart from end to end: build, synthesise, validate, extract, train, generate."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from speechmapper_plugin.quickstart.assets import (
    QuickstartAssets,
    build_assets,
    tokenizer_corpus,
)
from speechmapper_plugin.quickstart.commands import Commands, find_repo_root
from speechmapper_plugin.quickstart.corpus import (
    SPLITS,
    draw_transcripts,
    synthesize_splits,
)
from speechmapper_plugin.quickstart.generation import (
    GenerationSummary,
    read_generation,
)
from speechmapper_plugin.quickstart.layout import (
    QuickstartError,
    QuickstartLayout,
    prepare_out_dir,
)
from speechmapper_plugin.quickstart.options import QuickstartOptions, parse_options
from speechmapper_plugin.quickstart.steps import StepRunner, subprocess_env
from speechmapper_plugin.quickstart.summary import (
    QuickstartSummary,
    collect_summary,
    format_summary,
)
from speechmapper_plugin.tiny_assets.speech import INSTALL_HINT, has_speech_synthesis

NUM_STEPS = 11
"""Assets, speech, 2 validations, 2 extractions, stage 1, 2 instruction files,
stage 2 and generation."""


def run_quickstart(
    options: QuickstartOptions, echo: Callable[[str], None] = print
) -> QuickstartSummary:
    """Run every step into ``options.out_dir`` and return what happened.

    :raises QuickstartError: on a missing prerequisite or a failed step (the
        message names the step's log).
    """
    from speechmapper_plugin.data.instructions.__main__ import (
        main as instructions_main,
    )
    from speechmapper_plugin.data.validate_manifest import main as validate_main

    started = time.monotonic()
    size = options.size

    if not has_speech_synthesis():
        raise QuickstartError(
            f"The quickstart synthesises its speech with espeak-ng and sox, which are not installed. {INSTALL_HINT}"
        )

    repo = find_repo_root()
    has_generate = (repo / "recipes" / "generate" / "__main__.py").is_file()

    layout, replaced = prepare_out_dir(options.out_dir)
    if replaced:
        echo(f"Replaced the previous quickstart run in {layout.root}.")

    runner = StepRunner(
        logs=layout.logs,
        num_steps=NUM_STEPS if has_generate else NUM_STEPS - 1,
        env=subprocess_env(repo),
        cwd=repo,
        echo=echo,
    )

    tokenizer_text, transcripts = draw_transcripts(
        size.num_train, size.num_dev, seed=options.seed
    )

    assets = runner.call(
        "assets",
        "Building a tiny SeamlessM4T-v2 speech encoder and a tiny Llama-3-style LLM with their cards",
        lambda: _quietly_build_assets(layout, tokenizer_text, options.seed),
    )

    runner.call(
        "speech",
        f"Synthesising {size.num_train} training and {size.num_dev} held-out utterances (espeak-ng + sox)",
        lambda: synthesize_splits(layout, transcripts),
    )

    commands = Commands(
        repo, layout, sfm_card=assets.sfm_card, llm_card=assets.llm.card_name
    )

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
        f"Stage 1: {size.stage1_steps} steps of projector pretraining, no LLM forward (recipes.stage1)",
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

    runner.run(
        "stage2",
        f"Stage 2: {size.stage2_steps} steps of instruction tuning through the frozen LLM (recipes.stage2)",
        commands.stage2(size.stage2_steps, options.seed),
    )

    generation: GenerationSummary | None = None
    if has_generate:
        runner.run(
            "generate",
            "Generating transcripts of the held-out audio (recipes.generate)",
            commands.generate(),
        )
        generation = read_generation(layout.generate, size.num_shown)
    else:
        echo("recipes/generate is not in this checkout: skipping generation.")

    summary = collect_summary(
        layout,
        assets,
        runner.records,
        time.monotonic() - started,
        size,
        generation,
    )
    summary.write(layout.summary)
    return summary


def _quietly_build_assets(
    layout: QuickstartLayout, tokenizer_text: list[str], seed: int
) -> QuickstartAssets:
    """Build the assets without transformers' advice on models it constructs
    (meant for people writing model code, not for quickstart users)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return build_assets(layout, tokenizer_corpus(tokenizer_text), seed=seed)
    finally:
        hf_logging.set_verbosity(verbosity)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)

    try:
        summary = run_quickstart(options)
    except QuickstartError as ex:
        print(f"\nThe quickstart stopped: {ex}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nThe quickstart was interrupted.", file=sys.stderr)
        return 130

    print()
    print(format_summary(summary))
    return 0
