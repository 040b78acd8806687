"""What a grid runs: feature extraction once per (SFM, split), then per cell
(SFM, adapter, LLM, training protocol) its training runs and one evaluation,
as recipe commands in their own directories (``recipes.runs`` runs them),
with the model widths read from the cards.

A cell's runs live in ``cells/<sfm>/<adapter>/<llm>/``: ``stage1`` (shared
by the ``stage1`` and ``stage1_then_stage2`` protocols), ``stage2`` (from
``stage1``'s checkpoints) and ``stage2_only`` (a fresh model), each with its
``eval``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fairseq2.assets import AssetCardError, get_asset_store

from recipes.grid.config import (
    USES_STAGE1,
    AdapterEntry,
    GridConfig,
    LlmEntry,
    SfmEntry,
    TrainingProtocol,
)
from recipes.runs import RecipeRunSection, RecipeStep, StepList, TrainedRun
from speechmapper_plugin.llm import TargetLLMCardError, read_llm_embed_dim
from speechmapper_plugin.models.card_config import model_config_of


@dataclass(frozen=True, kw_only=True)
class GridCell(TrainedRun):
    sfm: SfmEntry
    adapter: AdapterEntry
    llm: LlmEntry
    protocol: TrainingProtocol

    @property
    def name(self) -> str:
        return f"{self.sfm.name}/{self.adapter.name}/{self.llm.name}/{self.protocol}"

    def describe(self) -> dict[str, Any]:
        return {
            "sfm": self.sfm.name,
            "sfm_card": self.sfm.card,
            "adapter": self.adapter.name,
            "adapter_family": self.adapter.family,
            "adapter_arch": self.adapter.arch,
            "llm": self.llm.name,
            "llm_card": self.llm.card,
            "protocol": self.protocol,
        }


@dataclass(frozen=True)
class Widths:
    """Feature width per SFM card and embedding width per LLM card."""

    sfm: Mapping[str, int]
    llm: Mapping[str, int]


def start_fairseq2(asset_paths: Sequence[Path]) -> None:
    """Start the fairseq2 runtime with the grid's extra card directories."""
    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets
    from fairseq2.runtime.dependency import DependencyContainer

    def register(container: DependencyContainer) -> None:
        for path in asset_paths:
            register_file_assets(container, path.expanduser().resolve())

    init_fairseq2(extras=register)


def read_widths(config: GridConfig) -> Widths:
    """The model widths a cell needs, read from the cards (no weights
    loaded): the SFM's feature width is the projector's ``input_dim``, the
    LLM's embedding width its ``output_dim``.

    :raises ValueError: naming a card that is unknown or has no width.
    """
    store = get_asset_store()

    sfm: dict[str, int] = {}
    for entry in config.sfms:
        card = store.maybe_retrieve_card(entry.card)
        if card is None:
            raise ValueError(
                f"`sfms`: no asset card named '{entry.card}' (add its directory to `asset_paths`)."
            )
        try:
            width = getattr(model_config_of(card), "model_dim", None)
        except (AssetCardError, ValueError) as ex:
            raise ValueError(f"`sfms`: the card '{entry.card}': {ex}") from None
        if not isinstance(width, int):
            raise ValueError(
                f"`sfms`: the card '{entry.card}' is not a speech encoder (its config has no `model_dim`)."
            )
        sfm[entry.card] = width

    llm: dict[str, int] = {}
    for llm_entry in config.llms:
        try:
            llm[llm_entry.card] = read_llm_embed_dim(llm_entry.card)
        except TargetLLMCardError as ex:
            raise ValueError(f"`llms`: {ex}") from None

    return Widths(sfm=sfm, llm=llm)


def extract_dir(out_dir: Path, sfm: SfmEntry, split: str) -> Path:
    return out_dir / "features" / sfm.name / split


def feature_store(out_dir: Path, sfm: SfmEntry, split: str) -> Path:
    """The store the extraction recipe writes (``OUT_DIR/features``)."""
    return extract_dir(out_dir, sfm, split) / "features"


def plan_cells(config: GridConfig, out_dir: Path) -> list[GridCell]:
    """One cell per (SFM, adapter, LLM, protocol), protocols innermost."""
    cells = []
    for sfm in config.sfms:
        for adapter in config.adapters:
            for llm in config.llms:
                runs_dir = out_dir / "cells" / sfm.name / adapter.name / llm.name
                for protocol in config.protocols:
                    stage2_dir = {
                        "stage1": None,
                        "stage1_then_stage2": runs_dir / "stage2",
                        "stage2_only": runs_dir / "stage2_only",
                    }[protocol]
                    cells.append(
                        GridCell(
                            sfm=sfm,
                            adapter=adapter,
                            llm=llm,
                            protocol=protocol,
                            stage1_dir=(
                                runs_dir / "stage1" if protocol in USES_STAGE1 else None
                            ),
                            stage2_dir=stage2_dir,
                        )
                    )
    return cells


def flow(value: object) -> str:
    """``value`` as a one-line YAML flow value for a ``--config key=value`` item."""
    return yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, width=1_000_000
    ).strip()


def plan_steps(
    config: GridConfig, cells: list[GridCell], out_dir: Path, widths: Widths
) -> list[RecipeStep]:
    """Every recipe run, in an order where each step follows what it needs."""
    assets = (
        [f"common.assets.extra_paths={flow([str(p) for p in config.asset_paths])}"]
        if config.asset_paths
        else []
    )

    steps = StepList(config.nproc, leading=assets)

    for sfm in config.sfms:
        for split, manifest in config.manifests.items():
            steps.add(
                "extract_features",
                extract_dir(out_dir, sfm, split),
                config.extract,
                [
                    f"model.name={sfm.card}",
                    f"dataset.split={split}",
                    f"dataset.config_overrides={flow({'manifests': {split: str(manifest)}})}",
                    *sfm.overrides,
                ],
            )

    def stores(sfm: SfmEntry) -> dict[str, str]:
        return {s: str(feature_store(out_dir, sfm, s)) for s in config.manifests}

    def model_settings(cell: GridCell) -> list[str]:
        model_config = {
            **cell.adapter.config,
            **cell.sfm.model_config,
            "input_dim": widths.sfm[cell.sfm.card],
            "output_dim": widths.llm[cell.llm.card],
        }
        return [
            f"model.family={cell.adapter.family}",
            f"model.arch={cell.adapter.arch}",
            f"model.config_overrides={flow(model_config)}",
        ]

    stage1_dirs: set[Path] = set()
    for cell in cells:
        if cell.stage1_dir is None or cell.stage1_dir in stage1_dirs:
            continue
        stage1_dirs.add(cell.stage1_dir)
        splits = {split: [path] for split, path in stores(cell.sfm).items()}
        steps.add(
            "stage1",
            cell.stage1_dir,
            config.stage1,
            [
                *model_settings(cell),
                f"target_llm.name={cell.llm.card}",
                f"dataset.config_overrides={flow({'splits': splits})}",
                *cell.adapter.stage1_overrides,
            ],
            tuple(extract_dir(out_dir, cell.sfm, s) for s in config.manifests),
        )

    stage2_only = RecipeRunSection(
        config_file=config.stage2_only.config_file or config.stage2.config_file,
        overrides=[*config.stage2.overrides, *config.stage2_only.overrides],
    )
    for cell in cells:
        if cell.stage2_dir is None:
            continue
        dataset = {
            "splits": {
                split: [str(p) for p in files]
                for split, files in config.stage2.instructions.items()
            },
            "feature_stores": list(stores(cell.sfm).values()),
        }
        settings = [
            f"llm.name={cell.llm.card}",
            f"dataset.config_overrides={flow(dataset)}",
        ]
        if cell.stage1_dir is not None:
            # From the cell's stage-1 checkpoints (the config's `model`).
            steps.add(
                "stage2",
                cell.stage2_dir,
                config.stage2,
                [
                    *settings,
                    f"common.assets.prev_checkpoint_dir={cell.stage1_dir / 'checkpoints'}",
                ],
                (cell.stage1_dir,),
            )
        else:
            # A fresh model of the cell's architecture, CE through the LLM.
            steps.add(
                "stage2",
                cell.stage2_dir,
                stage2_only,
                [
                    "model.name=null",
                    *model_settings(cell),
                    f"loss.sigma={config.stage2_only.sigma}",
                    *settings,
                ],
                tuple(extract_dir(out_dir, cell.sfm, s) for s in config.manifests),
            )

    evaluate = config.evaluate
    for cell in cells:
        steps.add(
            "evaluate",
            cell.eval_dir,
            evaluate,
            [
                f"sfm.name={cell.sfm.card}",
                f"llm.name={cell.llm.card}",
                f"common.assets.prev_checkpoint_dir={cell.model_dir / 'checkpoints'}",
                f"input.instructions={evaluate.instructions}",
                f"input.feature_store={stores(cell.sfm)[evaluate.split]}",
            ],
            (cell.model_dir,),
        )

    return steps.steps
