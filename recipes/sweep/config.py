"""Configuration of a σ/α sweep (a YAML file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fairseq2.utils.validation import ValidationResult

from recipes.runs import RecipeRunSection, RunsConfig, read_yaml, to_config
from speechmapper_plugin.losses import check_alpha, check_sigma

STAGE1_KEYS = ("loss.alpha",)
STAGE2_KEYS = ("loss.sigma", "loss.alpha", "common.assets.prev_checkpoint_dir")
EVALUATE_KEYS = (
    "common.assets.prev_checkpoint_dir",
    "input.instructions",
    "input.feature_store",
    "input.manifest",
)


@dataclass(kw_only=True)
class Stage2RunSection(RecipeRunSection):
    prev_checkpoint_dir: Path | None = None
    """The stage-1 checkpoints every σ run starts from (when ``alphas`` is empty)."""


@dataclass(kw_only=True)
class EvaluateRunSection(RecipeRunSection):
    instructions: Path | None = None
    """The held-out instruction file (its prompts must not be training prompts)."""

    feature_store: Path | None = None
    """The store that ``speech`` ids of ``instructions`` refer to."""

    metrics: list[str] = field(default_factory=list)
    """Dotted keys of ``summary.json``'s ``metrics`` shown in the table (every
    numeric one when empty)."""


@dataclass(kw_only=True)
class SweepConfig(RunsConfig):
    RESERVED = {"stage1": STAGE1_KEYS, "stage2": STAGE2_KEYS, "evaluate": EVALUATE_KEYS}

    sigmas: list[float] = field(default_factory=list)
    """Stage-2 σ values; one stage-2 run each (per α). Empty: evaluate the
    stage-1 runs directly."""

    alphas: list[float] = field(default_factory=list)
    """Stage-1 α values; one stage-1 run each. Empty: no stage-1 sweep (stage 2
    starts from ``stage2.prev_checkpoint_dir``)."""

    stage1: RecipeRunSection = field(default_factory=RecipeRunSection)

    stage2: Stage2RunSection = field(default_factory=Stage2RunSection)

    evaluate: EvaluateRunSection = field(default_factory=EvaluateRunSection)

    train_instructions: list[Path] = field(default_factory=list)
    """Stage-2 training instruction files; no instruction of
    ``evaluate.instructions`` may appear in them (held-out prompts)."""

    def validate(self) -> ValidationResult:
        result = super().validate()

        if not self.sigmas and not self.alphas:
            result.add_error("Give `sigmas` (stage 2) and/or `alphas` (stage 1).")

        for values, check, name in (
            (self.sigmas, check_sigma, "sigmas"),
            (self.alphas, check_alpha, "alphas"),
        ):
            if len(set(values)) != len(values):
                result.add_error(f"`{name}` holds duplicates: {values}.")
            for value in values:
                try:
                    check(value)
                except ValueError as ex:
                    result.add_error(f"`{name}`: {ex}")

        if self.alphas and self.stage1.config_file is None:
            result.add_error("`alphas` needs `stage1.config_file`.")
        if self.sigmas and self.stage2.config_file is None:
            result.add_error("`sigmas` needs `stage2.config_file`.")
        if self.sigmas and not self.alphas and self.stage2.prev_checkpoint_dir is None:
            result.add_error(
                "Without `alphas`, `stage2.prev_checkpoint_dir` must name the stage-1 checkpoints the σ runs start from."
            )
        if self.evaluate.config_file is None or self.evaluate.instructions is None:
            result.add_error(
                "`evaluate.config_file` and `evaluate.instructions` (the held-out instruction file) are required."
            )
        if not self.train_instructions:
            result.add_error(
                "`train_instructions` must list the stage-2 training instruction files, so the held-out prompts can be checked against them."
            )

        return result

    def inputs(self) -> dict[str, Path]:
        found = {
            f"train_instructions[{i}]": path
            for i, path in enumerate(self.train_instructions)
        }
        if self.evaluate.instructions is not None:
            found["evaluate.instructions"] = self.evaluate.instructions
        if self.evaluate.feature_store is not None:
            found["evaluate.feature_store"] = self.evaluate.feature_store
        if self.sigmas and not self.alphas and self.stage2.prev_checkpoint_dir:
            found["stage2.prev_checkpoint_dir"] = self.stage2.prev_checkpoint_dir
        return found

    def heldout_files(self) -> tuple[Path, list[Path]]:
        assert self.evaluate.instructions is not None
        return self.evaluate.instructions, self.train_instructions


def load_sweep_config(path: Path) -> SweepConfig:
    """Read and validate a sweep YAML file.

    :raises ValueError: If it cannot be read, has unknown keys or is invalid.
    """
    return to_config(read_yaml(path, "sweep"), SweepConfig, path, "sweep")
