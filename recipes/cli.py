"""``speechmapper``: one command for every recipe and tool of the plugin.

``speechmapper stage1 OUT_DIR --config-file ...`` runs exactly what
``python -m recipes.stage1 OUT_DIR --config-file ...`` runs (the module's
``__main__``, with the rest of the command line), but from any directory once
the package is installed. The command lives with the recipes, the top layer,
because it dispatches to them.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Subcommand:
    module: str
    """Run as ``__main__``, like ``python -m module``."""

    summary: str
    """One line for ``speechmapper --help``."""


SUBCOMMANDS: Final[Mapping[str, Subcommand]] = {
    "convert": Subcommand(
        "speechmapper_plugin.data.convert",
        "a local copy of a test set -> manifest and/or instruction file",
    ),
    "validate": Subcommand(
        "speechmapper_plugin.data.validate_manifest",
        "check every row of an audio manifest and report the bad ones",
    ),
    "instructions": Subcommand(
        "speechmapper_plugin.data.instructions",
        "build stage-2 instruction files (ASR, ST, spoken QA) from a feature store",
    ),
    "extract": Subcommand(
        "recipes.extract_features",
        "extract a speech encoder's features of a manifest into a feature store",
    ),
    "stage1": Subcommand(
        "recipes.stage1",
        "train the projector onto the LLM's token embeddings, without the LLM",
    ),
    "stage2": Subcommand(
        "recipes.stage2",
        "instruction-tune the projector through the frozen LLM ((1-σ)·CE + σ·MSE)",
    ),
    "generate": Subcommand(
        "recipes.generate",
        "generate text from speech with a trained projector and the frozen LLM",
    ),
    "evaluate": Subcommand(
        "recipes.evaluate",
        "generate on a test set and score it (WER, BLEU/chrF, QA, adherence)",
    ),
    "eet": Subcommand(
        "recipes.eet",
        "measure an LLM's embedding error threshold (how much MSE it tolerates)",
    ),
    "sweep": Subcommand(
        "recipes.sweep",
        "run stage 1/2 for each σ or α and evaluate each on held-out prompts",
    ),
    "grid": Subcommand(
        "recipes.grid",
        "run the speech encoder x adapter x LLM grid through the recipes",
    ),
    "export": Subcommand(
        "speechmapper_plugin.export",
        "export a trained projector or adapter as a self-contained directory",
    ),
    "serve": Subcommand(
        "speechmapper_plugin.serving",
        "serve a projector as an OpenAI-compatible speech API (FastAPI)",
    ),
    "demo": Subcommand(
        "speechmapper_plugin.demo",
        "a browser page (Gradio) to try a projector: upload or record, transcribe, translate, ask",
    ),
    "quickstart": Subcommand(
        "speechmapper_plugin.quickstart",
        "the offline CPU quickstart: toy world, toy LLM, both stages, evaluation",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    width = max(map(len, SUBCOMMANDS))
    listing = "\n".join(
        f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()
    )
    parser = argparse.ArgumentParser(
        prog="speechmapper",
        description="SpeechMapper on fairseq2: the recipes and tools in one command.",
        epilog=f"commands:\n{listing}\n\n`speechmapper COMMAND --help` shows a command's options; each is also `python -m MODULE` (the recipes from the repository root).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", metavar="COMMAND", choices=SUBCOMMANDS, help="one of the below"
    )
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="passed on to the command"
    )
    args = parser.parse_args(argv)

    # The module reads its arguments from sys.argv, and argparse names the
    # program after sys.argv[0]: `--help` then says `speechmapper stage1`.
    saved = sys.argv
    sys.argv = [f"speechmapper {args.command}", *args.args]
    try:
        runpy.run_module(SUBCOMMANDS[args.command].module, run_name="__main__")
    except SystemExit as ex:
        if ex.code is None or isinstance(ex.code, int):
            return ex.code or 0
        print(ex.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
