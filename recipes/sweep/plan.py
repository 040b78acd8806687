"""What a sweep runs: one stage-1 run per α, one stage-2 run per (α,) σ, one
evaluation per final model, each in its own directory, as recipe commands."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recipes.sweep.config import RecipeRunSection, SweepConfig

StepKind = Literal["stage1", "stage2", "evaluate", "extract_features"]
"""The recipe a step runs (``extract_features``: the grid's cached extraction)."""


@dataclass(frozen=True)
class SweepRun:
    """One point of the sweep and where its outputs go."""

    name: str
    """``alpha_9/sigma_0.5``, ``sigma_0.5`` or ``alpha_9``."""

    alpha: float | None
    sigma: float | None
    stage1_dir: Path | None
    stage2_dir: Path | None
    eval_dir: Path

    @property
    def model_dir(self) -> Path:
        """The training run whose last checkpoint is evaluated."""
        model_dir = self.stage2_dir or self.stage1_dir
        assert model_dir is not None
        return model_dir


@dataclass(frozen=True)
class SweepStep:
    kind: StepKind
    out_dir: Path
    command: list[str]
    needs: tuple[Path, ...] = ()
    """Output dirs of the steps this one starts from."""


def _value(value: float) -> str:
    return f"{value:g}"


def plan_runs(config: SweepConfig, out_dir: Path) -> list[SweepRun]:
    runs = []
    alphas: list[float | None] = list(config.alphas) or [None]
    sigmas: list[float | None] = list(config.sigmas) or [None]
    for alpha in alphas:
        stage1_dir = None if alpha is None else out_dir / f"alpha_{_value(alpha)}"
        for sigma in sigmas:
            parts = [] if alpha is None else [f"alpha_{_value(alpha)}"]
            if sigma is not None:
                parts.append(f"sigma_{_value(sigma)}")
            name = "/".join(parts)
            stage2_dir = None if sigma is None else out_dir / name
            model_dir = stage2_dir or stage1_dir
            assert model_dir is not None
            runs.append(
                SweepRun(
                    name=name,
                    alpha=alpha,
                    sigma=sigma,
                    stage1_dir=stage1_dir,
                    stage2_dir=stage2_dir,
                    eval_dir=model_dir / "eval",
                )
            )
    return runs


def launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m"]
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", "--nproc-per-node", str(nproc), "-m"]


def _command(
    config: SweepConfig,
    recipe: str,
    out_dir: Path,
    section: RecipeRunSection,
    settings: list[str],
) -> list[str]:
    command = [*launcher(config.nproc), f"recipes.{recipe}", str(out_dir)]
    if section.config_file is not None:
        command += ["--config-file", str(section.config_file)]
    command += ["--config", *section.overrides, *settings, "--no-rich"]
    return command


def plan_steps(config: SweepConfig, runs: list[SweepRun]) -> list[SweepStep]:
    """Every recipe run, in an order where each step follows what it needs."""
    steps: list[SweepStep] = []
    seen: set[Path] = set()

    for run in runs:
        if run.stage1_dir is not None and run.stage1_dir not in seen:
            seen.add(run.stage1_dir)
            assert run.alpha is not None
            steps.append(
                SweepStep(
                    "stage1",
                    run.stage1_dir,
                    _command(
                        config,
                        "stage1",
                        run.stage1_dir,
                        config.stage1,
                        [f"loss.alpha={float(run.alpha)!r}"],
                    ),
                )
            )

    for run in runs:
        if run.stage2_dir is None or run.sigma is None:
            continue
        settings = [f"loss.sigma={float(run.sigma)!r}"]
        needs: tuple[Path, ...] = ()
        if run.stage1_dir is not None and run.alpha is not None:
            settings.append(f"loss.alpha={float(run.alpha)!r}")
            start = run.stage1_dir / "checkpoints"
            needs = (run.stage1_dir,)
        else:
            assert config.stage2.prev_checkpoint_dir is not None
            start = config.stage2.prev_checkpoint_dir
        settings.append(f"common.assets.prev_checkpoint_dir={start}")
        steps.append(
            SweepStep(
                "stage2",
                run.stage2_dir,
                _command(config, "stage2", run.stage2_dir, config.stage2, settings),
                needs,
            )
        )

    evaluate = config.evaluate
    for run in runs:
        settings = [
            f"common.assets.prev_checkpoint_dir={run.model_dir / 'checkpoints'}",
            f"input.instructions={evaluate.instructions}",
        ]
        if evaluate.feature_store is not None:
            settings.append(f"input.feature_store={evaluate.feature_store}")
        steps.append(
            SweepStep(
                "evaluate",
                run.eval_dir,
                _command(config, "evaluate", run.eval_dir, evaluate, settings),
                (run.model_dir,),
            )
        )

    return steps
