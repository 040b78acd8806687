"""What a sweep runs: one stage-1 run per α, one stage-2 run per (α,) σ, one
evaluation per final model, each in its own directory, as recipe commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipes.runs import RecipeStep, StepList, TrainedRun
from recipes.sweep.config import SweepConfig


@dataclass(frozen=True, kw_only=True)
class SweepRun(TrainedRun):
    """One point of the sweep and where its outputs go."""

    name: str
    """``alpha_9/sigma_0.5``, ``sigma_0.5`` or ``alpha_9``."""

    alpha: float | None
    sigma: float | None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha, "sigma": self.sigma}


def plan_runs(config: SweepConfig, out_dir: Path) -> list[SweepRun]:
    runs = []
    alphas: list[float | None] = [*config.alphas] or [None]
    sigmas: list[float | None] = [*config.sigmas] or [None]
    for alpha in alphas:
        stage1 = None if alpha is None else f"alpha_{alpha:g}"
        for sigma in sigmas:
            stage2 = None if sigma is None else f"sigma_{sigma:g}"
            name = "/".join(part for part in (stage1, stage2) if part is not None)
            runs.append(
                SweepRun(
                    name=name,
                    alpha=alpha,
                    sigma=sigma,
                    stage1_dir=None if stage1 is None else out_dir / stage1,
                    stage2_dir=None if stage2 is None else out_dir / name,
                )
            )
    return runs


def plan_steps(config: SweepConfig, runs: list[SweepRun]) -> list[RecipeStep]:
    """Every recipe run, in an order where each step follows what it needs."""
    steps = StepList(config.nproc)

    stage1_runs = {
        run.stage1_dir: run.alpha
        for run in runs
        if run.stage1_dir is not None and run.alpha is not None
    }
    for stage1_dir, alpha in stage1_runs.items():
        steps.add("stage1", stage1_dir, config.stage1, [f"loss.alpha={float(alpha)!r}"])

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
