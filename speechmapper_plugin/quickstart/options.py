"""What the quickstart builds and how long it trains: sizes and command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.validation import check_positive_fields

DEFAULT_OUT_DIR: Final = Path("quickstart_out")

STEP_MULTIPLE: Final = 20
"""Training steps come in multiples of 20, so that validating at the start,
halfway and at the end lands on fairseq2's metric-publishing grid."""

MIN_STAGE1_STEPS: Final = 100
"""Above the 50 warm-up steps of ``recipes/stage1/configs/quickstart.yaml``."""

MIN_STAGE2_STEPS: Final = 40
"""Above the 20 warm-up steps of ``recipes/stage2/configs/quickstart.yaml``."""


@dataclass(frozen=True, kw_only=True)
class QuickstartSize:
    """How much of the toy world is spoken and how long each model trains."""

    num_train: int
    """Training sentences: the toy LLM's text and stage 1/2's speech."""

    num_dev: int
    """Held-out sentences (another held-out voice): validation."""

    num_test: int
    """Held-out sentences spoken by the held-out test voice: evaluation."""

    llm_steps: int
    """Text-only training steps of the toy LLM."""

    stage1_steps: int

    stage2_steps: int

    num_eet_sentences: int = 200

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_positive_fields(
            result,
            self,
            ("num_train", "num_dev", "num_test", "llm_steps", "num_eet_sentences"),
        )
        for name, minimum in (
            ("stage1_steps", MIN_STAGE1_STEPS),
            ("stage2_steps", MIN_STAGE2_STEPS),
        ):
            steps = getattr(self, name)
            if steps < minimum or steps % STEP_MULTIPLE:
                result.add_error(
                    f"`{name}` must be a multiple of {STEP_MULTIPLE} and at least {minimum}, but is {steps}."
                )
        return result


DEFAULT_SIZE: Final = QuickstartSize(
    num_train=8000,
    num_dev=200,
    num_test=200,
    llm_steps=3000,
    stage1_steps=3000,
    stage2_steps=300,
)
"""The full story: under 15 minutes on two CPU cores (see the README)."""

SMALL_SIZE: Final = QuickstartSize(
    num_train=1000,
    num_dev=40,
    num_test=40,
    llm_steps=1200,
    stage1_steps=400,
    stage2_steps=60,
    num_eet_sentences=16,
)
"""The same chain on less data and fewer steps: the end-to-end test."""


@dataclass(frozen=True, kw_only=True)
class QuickstartOptions:
    out_dir: Path

    size: QuickstartSize

    seed: int = 0
    """Seeds the toy world, the models and the training runs."""

    fresh: bool = False
    """Start over instead of resuming the steps a previous run finished."""


def parse_options(argv: Sequence[str] | None = None) -> QuickstartOptions:
    """The command line of ``python -m speechmapper_plugin.quickstart``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.quickstart",
        description=(
            "The offline quickstart: a toy world (English with French and German "
            "translations), a tiny Llama trained on its text to repeat and translate, "
            "espeak-ng speech with a held-out voice, then feature extraction, stage 1, "
            "ASR-only stage 2 (sigma 0.9 and the sigma 0 ablation) and evaluation of "
            "zero-shot speech translation, all with the real recipes. Nothing is "
            "downloaded. A rerun resumes: finished steps are skipped."
        ),
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"where everything goes (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="less speech and fewer steps; what the test runs",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start over (delete an earlier run)"
    )
    parser.add_argument("--num-train", type=int, help="training sentences")
    parser.add_argument("--num-dev", type=int, help="dev sentences")
    parser.add_argument("--num-test", type=int, help="test sentences")
    parser.add_argument("--llm-steps", type=int, help="toy LLM training steps")
    parser.add_argument("--stage1-steps", type=int, help="stage-1 training steps")
    parser.add_argument("--stage2-steps", type=int, help="stage-2 training steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    size = SMALL_SIZE if args.small else DEFAULT_SIZE
    for name in (
        "num_train",
        "num_dev",
        "num_test",
        "llm_steps",
        "stage1_steps",
        "stage2_steps",
    ):
        value = getattr(args, name)
        if value is not None:
            size = replace(size, **{name: value})

    result = size.validate()
    if result.has_error():
        parser.error(str(result))

    return QuickstartOptions(
        out_dir=args.out_dir, size=size, seed=args.seed, fresh=args.fresh
    )
