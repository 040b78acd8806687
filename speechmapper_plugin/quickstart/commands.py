"""The command lines of the quickstart's steps: the recipes with their
quickstart configs, and the run's cards, data and step counts as overrides."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from speechmapper_plugin.quickstart.layout import QuickstartError, QuickstartLayout


def find_repo_root() -> Path:
    """The folder holding the ``recipes`` package: the checkout, or the
    site-packages of an installed wheel (which ships them).

    :raises QuickstartError: if neither the package's folder nor the current
        directory has them.
    """
    candidates = [Path(__file__).resolve().parents[2], Path.cwd()]
    for candidate in candidates:
        if (candidate / "recipes" / "stage1" / "__main__.py").is_file():
            return candidate
    raise QuickstartError(
        "The quickstart runs the `recipes` package, which is not installed beside `speechmapper_plugin`; reinstall speechmapper-fairseq2 (`pip install -e .` in a checkout) or run it from a checkout (e.g. `make quickstart`)."
    )


def yaml_value(value: object) -> str:
    """A ``--config`` value: JSON is YAML, and quotes every path safely."""
    return json.dumps(value)


class Commands:
    """Builds each step's command for one quickstart run."""

    def __init__(
        self, repo: Path, layout: QuickstartLayout, *, sfm_card: str, llm_card: str
    ) -> None:
        self._repo = repo
        self._layout = layout
        self._sfm_card = sfm_card
        self._llm_card = llm_card

    def validate_manifest_args(self, split: str) -> list[str]:
        """Arguments of ``python -m speechmapper_plugin.data.validate_manifest``."""
        layout = self._layout
        return [
            str(layout.manifest(split)),
            "--report",
            str(layout.validation_report(split)),
        ]

    def extract_features(self, split: str) -> list[str]:
        layout = self._layout
        return self._recipe(
            "extract_features",
            layout.extraction(split),
            f"model.name={self._sfm_card}",
            f"dataset.split={split}",
            f"dataset.config_overrides.manifests={yaml_value({split: str(layout.manifest(split))})}",
        )

    def stage1(self, num_steps: int, seed: int) -> list[str]:
        """Validated on the dev and test splits: held-out sentences and voices."""
        layout = self._layout
        splits = {s: [str(layout.features(s))] for s in ("train", "dev", "test")}
        return self._recipe(
            "stage1",
            layout.stage1,
            f"target_llm.name={self._llm_card}",
            f"dataset.config_overrides.splits={yaml_value(splits)}",
            "dataset.train_split=train",
            f"dataset.valid_splits={yaml_value(['dev', 'test'])}",
            *_regime(num_steps, validations=10),
            f"common.seed={seed}",
        )

    def instructions_args(self, split: str, pool: str, seed: int) -> list[str]:
        """Arguments of ``python -m speechmapper_plugin.data.instructions``."""
        layout = self._layout
        return [
            "asr",
            "--store",
            str(layout.features(split)),
            "--out",
            str(layout.instructions(f"asr_{split}")),
            "--pool",
            pool,
            "--seed",
            str(seed),
        ]

    def stage2(self, run: str, sigma: float, num_steps: int, seed: int) -> list[str]:
        layout = self._layout
        dataset = {
            "splits": {
                "train": [str(layout.instructions("asr_train"))],
                "dev": [str(layout.instructions("asr_dev"))],
            },
            "feature_stores": [str(layout.features(s)) for s in ("train", "dev")],
        }
        return self._recipe(
            "stage2",
            layout.stage2(run),
            f"common.assets.prev_checkpoint_dir={yaml_value(str(layout.stage1 / 'checkpoints'))}",
            f"llm.name={self._llm_card}",
            f"dataset.config_overrides={yaml_value(dataset)}",
            f"loss.sigma={sigma}",
            *_regime(num_steps),
            f"common.seed={seed}",
        )

    def evaluate(self, run: str, instructions: Path, out: Path) -> list[str]:
        """Generate and score ``instructions`` (audio paths) with stage-2 run
        ``run``; the encoder layer and LayerNorm are the ones its projector
        records (the extraction's), as in any user's run."""
        layout = self._layout
        return self._recipe(
            "evaluate",
            out,
            f"common.assets.prev_checkpoint_dir={yaml_value(str(layout.stage2(run) / 'checkpoints'))}",
            f"sfm.name={self._sfm_card}",
            f"llm.name={self._llm_card}",
            f"input.instructions={yaml_value(str(instructions))}",
            "scoring.comet=false",
            config="tiny",
        )

    def _recipe(
        self, name: str, out: Path, *overrides: str, config: str = "quickstart"
    ) -> list[str]:
        config_file = self._repo / "recipes" / name / "configs" / f"{config}.yaml"
        if not config_file.is_file():
            raise QuickstartError(
                f"The {config} config of recipes.{name} is missing: {config_file}."
            )
        return [
            sys.executable,
            "-m",
            f"recipes.{name}",
            str(out),
            "--config-file",
            str(config_file),
            "--config",
            *overrides,
            f"common.assets.extra_paths={yaml_value([str(self._layout.cards)])}",
            "common.no_sweep_dir=true",
            "--no-rich",
        ]


def _regime(num_steps: int, validations: int = 2) -> Sequence[str]:
    """Validate at the start, about ``validations`` times during training and
    at the end; checkpoint at the end.

    fairseq2 validates on its metric-publishing grid (every 10 steps), so the
    interval is rounded down to a multiple of 10; fairseq2 always validates
    after the last step too."""
    every = max(10, num_steps // validations // 10 * 10)
    return (
        f"regime.num_steps={num_steps}",
        "regime.publish_metrics_every_n_steps=10",
        "regime.validate_at_start=true",
        f"regime.validate_every_n_steps={every}",
        f"regime.checkpoint_every_n_steps={num_steps}",
    )
