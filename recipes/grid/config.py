"""Configuration of an SFM x adapter x LLM grid (a YAML file)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from fairseq2.utils.validation import ValidationResult

from recipes.runs import RecipeRunSection, RunsConfig, read_yaml, to_config

TrainingProtocol = Literal["stage1", "stage1_then_stage2", "stage2_only"]
"""How a cell's model is trained:

- ``stage1``: SpeechMapper's LLM-free stage 1 only (cheap: no LLM runs);
- ``stage1_then_stage2``: stage 1, then stage 2 from its checkpoints;
- ``stage2_only``: a fresh adapter trained by the stage-2 recipe alone, CE
  through the frozen LLM (σ = ``stage2_only.sigma``, 0 by default), as
  Verdini et al. 2024 train their adapters.
"""

PROTOCOLS: Final[tuple[TrainingProtocol, ...]] = get_args(TrainingProtocol)

USES_STAGE1: Final[frozenset[TrainingProtocol]] = frozenset(
    {"stage1", "stage1_then_stage2"}
)

USES_STAGE2: Final[frozenset[TrainingProtocol]] = frozenset(
    {"stage1_then_stage2", "stage2_only"}
)

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(kw_only=True)
class SfmEntry:
    """A speech foundation model: one feature extraction per manifest split."""

    name: str
    """Label in the table and directory name."""

    card: str
    """Its asset card (family ``sm4t_speech_encoder`` or ``whisper_encoder``)."""

    overrides: list[str] = field(default_factory=list)
    """Extraction overrides for this SFM (e.g. ``features.layer=32``)."""

    model_config: dict[str, Any] = field(default_factory=dict)
    """Model-config overrides of every cell of this SFM, over the adapter's
    ``config``: what follows from the features, e.g. ``{frame_averaging: 1}``
    for SeamlessM4T's 6.25 Hz adaptor output extracted with
    ``features.frame_averaging=1``."""


@dataclass(kw_only=True)
class AdapterEntry:
    """A projector/adapter architecture trained in every (SFM, LLM) cell."""

    name: str

    family: str = "speechmapper"
    """``speechmapper`` (the SpeechMapper projector) or ``speech_adapter``."""

    arch: str

    config: dict[str, Any] = field(default_factory=dict)
    """Model-config overrides (any YAML mapping, passed on as
    ``model.config_overrides``); ``input_dim`` and ``output_dim`` are set per
    cell from the SFM's and the LLM's cards."""

    stage1_overrides: list[str] = field(default_factory=list)
    """Extra stage-1 overrides for this adapter (e.g. loss weights)."""


@dataclass(kw_only=True)
class LlmEntry:
    name: str

    card: str
    """A target-LLM card (``speechmapper_pad_token``, ``speechmapper_chat_template``)."""


@dataclass(kw_only=True)
class GridStage2Section(RecipeRunSection):
    instructions: dict[str, list[Path]] = field(default_factory=dict)
    """Instruction files per split (``train``, ``dev``); their ``speech`` ids
    are manifest ids, found in every SFM's feature stores."""

    train_split: str = "train"
    """The split of ``instructions`` stage 2 trains on (the stage-2 config's
    ``dataset.train_split``): the held-out prompts must not occur in it."""


@dataclass(kw_only=True)
class GridStage2OnlySection(RecipeRunSection):
    """The ``stage2_only`` protocol: the stage-2 recipe trains a fresh model
    (``model.family``/``arch``/``config_overrides`` of the cell's adapter)
    on ``stage2.instructions``. ``config_file`` defaults to
    ``stage2.config_file``; the section's ``overrides`` come after
    ``stage2.overrides``."""

    sigma: float = 0.0
    """``loss.sigma`` of these runs: 0 is CE alone, how Verdini et al. train
    their adapters (the MSE term regresses onto targets that only stage 1
    teaches)."""

    def validate(self) -> ValidationResult:
        result = super().validate()
        if not 0.0 <= self.sigma <= 1.0:
            result.add_error(f"`sigma` must be in [0, 1], but is {self.sigma}.")
        return result


@dataclass(kw_only=True)
class GridEvaluateSection(RecipeRunSection):
    instructions: Path | None = None
    """The held-out instruction file (``speech`` ids of ``split``'s manifest)."""

    split: str = "eval"
    """The manifest split whose feature store the instructions refer to."""

    metrics: list[str] = field(default_factory=list)
    """Dotted keys of ``summary.json``'s ``metrics``: one table each."""


@dataclass(kw_only=True)
class GridConfig(RunsConfig):
    RESERVED = {
        "extract": ("model.name", "dataset.split", "dataset.config_overrides"),
        "stage1": ("model.family", "model.arch", "target_llm.name"),
        "stage2": ("llm.name", "common.assets.prev_checkpoint_dir"),
        "stage2_only": (
            "model.name",
            "model.family",
            "model.arch",
            "model.config_overrides",
            "llm.name",
            "loss.sigma",
            "common.assets.prev_checkpoint_dir",
        ),
        "evaluate": (
            "sfm.name",
            "llm.name",
            "common.assets.prev_checkpoint_dir",
            "input.instructions",
            "input.feature_store",
        ),
    }

    sfms: list[SfmEntry] = field(default_factory=list)

    adapters: list[AdapterEntry] = field(default_factory=list)

    llms: list[LlmEntry] = field(default_factory=list)

    protocols: list[TrainingProtocol] = field(default_factory=lambda: ["stage1"])
    """The training protocols (:data:`TrainingProtocol`) each (SFM, adapter, LLM)
    is trained with: one cell each, evaluated after its last stage. Stage 1
    runs once for ``stage1`` and ``stage1_then_stage2``."""

    manifests: dict[str, Path] = field(default_factory=dict)
    """Split -> audio manifest; each is extracted once per SFM (cached)."""

    extract: RecipeRunSection = field(default_factory=RecipeRunSection)

    stage1: RecipeRunSection = field(default_factory=RecipeRunSection)

    stage2: GridStage2Section = field(default_factory=GridStage2Section)

    stage2_only: GridStage2OnlySection = field(default_factory=GridStage2OnlySection)

    evaluate: GridEvaluateSection = field(default_factory=GridEvaluateSection)

    asset_paths: list[Path] = field(default_factory=list)
    """Extra card directories: read by the grid (model widths) and passed to
    every recipe as ``common.assets.extra_paths``."""

    def validate(self) -> ValidationResult:
        result = super().validate()

        for axis in ("sfms", "adapters", "llms"):
            entries = getattr(self, axis)
            if not entries:
                result.add_error(f"`{axis}` must list at least one entry.")
            names = [e.name for e in entries]
            if len(set(names)) != len(names):
                result.add_error(f"`{axis}` holds duplicate names: {names}.")
            for name in names:
                if not _NAME.fullmatch(name):
                    result.add_error(
                        f"`{axis}`: the name {name!r} must be letters, digits, '_', '.' or '-' (it names a directory)."
                    )

        protocols = set(self.protocols)
        if not protocols or not protocols <= set(PROTOCOLS):
            result.add_error(
                f"`protocols` must be a non-empty subset of {list(PROTOCOLS)}, but is {self.protocols}."
            )
        elif len(protocols) != len(self.protocols):
            result.add_error(f"`protocols` holds duplicates: {self.protocols}.")

        if not self.manifests:
            result.add_error("`manifests` must name at least one split to extract.")
        for split in self.manifests:
            if not _NAME.fullmatch(split):
                result.add_error(f"`manifests`: bad split name {split!r}.")

        if self.extract.config_file is None:
            result.add_error("`extract.config_file` is required.")
        if protocols & USES_STAGE1 and self.stage1.config_file is None:
            result.add_error(
                f"`protocols` {self.protocols} train stage 1: `stage1.config_file` is required."
            )
        if protocols & USES_STAGE2:
            if self.stage2.config_file is None:
                result.add_error(
                    f"`protocols` {self.protocols} train stage 2: `stage2.config_file` is required."
                )
            if self.stage2.train_split not in self.stage2.instructions:
                result.add_error(
                    f"`protocols` {self.protocols} train stage 2: `stage2.instructions` must give the instruction files per split, the training split `{self.stage2.train_split}` (`stage2.train_split`) included."
                )

        if self.evaluate.config_file is None or self.evaluate.instructions is None:
            result.add_error(
                "`evaluate.config_file` and `evaluate.instructions` (held-out) are required."
            )
        elif self.evaluate.split not in self.manifests:
            result.add_error(
                f"`evaluate.split` ({self.evaluate.split!r}) must be a key of `manifests`, whose features the held-out instructions refer to."
            )

        return result

    def inputs(self) -> dict[str, Path]:
        found = {f"manifests.{split}": path for split, path in self.manifests.items()}
        for split, files in self.stage2.instructions.items():
            for i, path in enumerate(files):
                found[f"stage2.instructions.{split}[{i}]"] = path
        if self.evaluate.instructions is not None:
            found["evaluate.instructions"] = self.evaluate.instructions
        return found

    def heldout_files(self) -> tuple[Path, list[Path]]:
        """The held-out prompts must not occur in what stage 2 trains on."""
        assert self.evaluate.instructions is not None
        train = self.stage2.instructions.get(self.stage2.train_split, [])
        return self.evaluate.instructions, train


def load_grid_config(path: Path) -> GridConfig:
    """Read and validate a grid YAML file.

    :raises ValueError: If it cannot be read, has unknown keys or is invalid.
    """
    data = read_yaml(path, "grid")

    # Adapter `config` mappings are free-form YAML (nested lists of blocks...),
    # which fairseq2's structurer has no type for: kept aside, then attached.
    if isinstance(data, dict) and "stages" in data:
        raise ValueError(
            f"The grid config {path}: `stages` is now `protocols`: `[stage1]` is `protocols: [stage1]`, `[stage1, stage2]` is `protocols: [stage1_then_stage2]` (add `stage2_only` to also train fresh adapters by stage 2 alone)."
        )
    adapter_configs = _pop_model_configs(data, path, "adapters", "config")
    sfm_configs = _pop_model_configs(data, path, "sfms", "model_config")
    config = to_config(data, GridConfig, path, "grid")
    for adapter, model_config in zip(config.adapters, adapter_configs, strict=True):
        adapter.config = model_config
    for sfm, model_config in zip(config.sfms, sfm_configs, strict=True):
        sfm.model_config = model_config
    return config


def _pop_model_configs(
    data: object, path: Path, axis: str, key: str
) -> list[dict[str, Any]]:
    """The ``key`` mappings of the ``axis`` entries, taken out of ``data``."""
    if not isinstance(data, dict):
        raise ValueError(f"The grid config {path} must be a YAML mapping.")
    entries = data.get(axis) or []
    if not isinstance(entries, list):
        raise ValueError(f"The grid config {path}: `{axis}` must be a list.")
    configs = []
    for entry in entries:
        model_config = entry.pop(key, {}) if isinstance(entry, dict) else {}
        if not isinstance(model_config, dict):
            raise ValueError(
                f"The grid config {path}: an entry of `{axis}` has a `{key}` that is not a mapping: {model_config!r}."
            )
        for name in ("input_dim", "output_dim"):
            if name in model_config:
                raise ValueError(
                    f"The grid config {path}: an entry of `{axis}` sets `{name}` in its `{key}`, which the grid sets per cell from the cards."
                )
        configs.append(model_config)
    return configs
