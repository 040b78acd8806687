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
halfway and at the end lands on fairseq2's metric-publishing grid (10 steps)."""

MIN_STAGE1_STEPS: Final = 40
"""Above the 20 warm-up steps of ``recipes/stage1/configs/tiny.yaml``."""

MIN_STAGE2_STEPS: Final = 20
"""Above the 10 warm-up steps of ``recipes/stage2/configs/tiny.yaml``."""


@dataclass(frozen=True, kw_only=True)
class QuickstartSize:
    """How much speech the quickstart synthesises and how long it trains."""

    num_train: int
    """Training utterances (stages 1 and 2)."""

    num_dev: int
    """Held-out utterances: validation and generation."""

    stage1_steps: int

    stage2_steps: int

    num_shown: int = 4
    """Generated hypotheses printed in the summary."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_positive_fields(result, self, ("num_train", "num_dev", "num_shown"))
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
    num_train=64, num_dev=16, stage1_steps=400, stage2_steps=60
)
"""About three minutes on two CPU cores."""

SMALL_SIZE: Final = QuickstartSize(
    num_train=24, num_dev=8, stage1_steps=300, stage2_steps=20, num_shown=3
)
"""The same chain on less data and fewer steps: the end-to-end test."""


@dataclass(frozen=True, kw_only=True)
class QuickstartOptions:
    out_dir: Path

    size: QuickstartSize

    seed: int = 0
    """Seeds the sentences, the tiny models and the training runs."""


def parse_options(argv: Sequence[str] | None = None) -> QuickstartOptions:
    """The command line of ``python -m speechmapper_plugin.quickstart``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.quickstart",
        description=(
            "The offline quickstart: builds a tiny SeamlessM4T-v2 encoder, a tiny "
            "Llama-3-style LLM and a synthesised speech corpus, then runs manifest "
            "validation, feature extraction, stage 1, stage 2 and generation with "
            "the real recipes. Nothing is downloaded."
        ),
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"where everything goes (default: {DEFAULT_OUT_DIR}); a previous quickstart run there is replaced",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="less speech and fewer steps (about half the time); what the test runs",
    )
    parser.add_argument("--num-train", type=int, help="training utterances")
    parser.add_argument("--num-dev", type=int, help="held-out utterances")
    parser.add_argument("--stage1-steps", type=int, help="stage-1 training steps")
    parser.add_argument("--stage2-steps", type=int, help="stage-2 training steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    size = SMALL_SIZE if args.small else DEFAULT_SIZE
    for name in ("num_train", "num_dev", "stage1_steps", "stage2_steps"):
        value = getattr(args, name)
        if value is not None:
            size = replace(size, **{name: value})

    result = size.validate()
    if result.has_error():
        parser.error(str(result))

    return QuickstartOptions(out_dir=args.out_dir, size=size, seed=args.seed)
