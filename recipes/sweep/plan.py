"""What a sweep runs: one stage-1 run per α, one stage-2 run per (α,) σ, one
evaluation per final model, each in its own directory, as recipe commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recipes.runs import RecipeStep, StepList, TrainedRun
from recipes.sweep.config import SweepConfig


@dataclass(frozen=True, kw_only=True)
class SweepRun(TrainedRun):
    """One point of the sweep and where its outputs go."""

    name: str
    """``alpha_9/sigma_0.5``, ``sigma_0.5`` or ``alpha_9``."""

    alpha: float | None
    sigma: float | None


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
            runs.append(
                SweepRun(
                    name=name,
                    alpha=alpha,
                    sigma=sigma,
                    stage1_dir=stage1_dir,
                    stage2_dir=None if sigma is None else out_dir / name,
                )
            )
    return runs


def plan_steps(config: SweepConfig, runs: list[SweepRun]) -> list[RecipeStep]:
    """Every recipe run, in an order where each step follows what it needs."""
    steps = StepList(config.nproc)
    seen: set[Path] = set()

    for run in runs:
        if run.stage1_dir is not None and run.stage1_dir not in seen:
            seen.add(run.stage1_dir)
            assert run.alpha is not None
            steps.add(
                "stage1",
                run.stage1_dir,
                config.stage1,
                [f"loss.alpha={float(run.alpha)!r}"],
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
        steps.add("stage2", run.stage2_dir, config.stage2, settings, needs)

    evaluate = config.evaluate
    for run in runs:
        settings = [
            f"common.assets.prev_checkpoint_dir={run.model_dir / 'checkpoints'}",
            f"input.instructions={evaluate.instructions}",
        ]
        if evaluate.feature_store is not None:
            settings.append(f"input.feature_store={evaluate.feature_store}")
        steps.add("evaluate", run.eval_dir, evaluate, settings, (run.model_dir,))

    return steps.steps
