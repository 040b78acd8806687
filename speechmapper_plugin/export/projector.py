"""A trained projector as a self-contained directory that others can load.

A recipe's checkpoint directory is bound to its run (``last_checkpoint``,
optimizer and data-reader state, absolute feature-store paths). The export
holds only what a user of the projector needs::

    model.safetensors   the weights (fairseq2 names; no pickle)
    config.json         the projector configuration, the speech encoder card,
                        layer, LayerNorm and frame averaging it was trained
                        on, the target LLM card and pad token, training and
                        validation summary
    card.yaml           a fairseq2 asset card: ``checkpoint: model.safetensors``
                        (relative to the card), the full ``model_config``
    README.md           a short model card

Register the directory as an asset source (``common.assets.extra_paths`` in
a recipe, ``register_file_assets`` in Python, or ``FAIRSEQ2_USER_ASSET_DIR``)
and ``load_model(name)`` / ``SpeechMapperPipeline.from_cards(None, name, llm)``
load it like any projector card; the card's ``model_config.speech_features``
names the speech encoder card, layer and LayerNorm it was trained on, which
the pipeline and the generate recipe then use by default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from safetensors.torch import save

from speechmapper_plugin.atomic_files import atomic_write_bytes
from speechmapper_plugin.models.adapters import (
    AdapterConfig,
    AnyProjector,
    ProjectorConfig,
    projector_family,
)
from speechmapper_plugin.models.projector_base import (
    SpeechFeaturesConfig,
    WarmStartRecord,
)
from speechmapper_plugin.models.speechmapper.config import (
    SPEECHMAPPER_FAMILY,
    ProjectorBlockConfig,
    SpeechMapperConfig,
)

EXPORT_FORMAT: Final = "speechmapper-projector"
EXPORT_FORMAT_VERSION: Final = 1

WEIGHTS_FILE: Final = "model.safetensors"
CONFIG_FILE: Final = "config.json"
CARD_FILE: Final = "card.yaml"
README_FILE: Final = "README.md"

_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(kw_only=True)
class SpeechEncoderProvenance:
    """The speech features a projector was trained on."""

    card: str
    """The speech encoder's asset card (e.g. ``seamless_m4t_v2_large_speech_encoder``)."""

    layer: int
    layer_norm: bool
    frame_averaging: int
    """Encoder frames averaged into one feature frame before the projector."""


@dataclass(kw_only=True)
class ProjectorProvenance:
    """What an exported projector was trained on and how well it did."""

    sfm: SpeechEncoderProvenance | None = None

    target_llm: str | None = None
    """Defaults to the projector config's ``target_llm``."""

    pad_token: str | None = None
    """The token whose embedding padded the stage-1/-2 MSE targets."""

    stage: str | None = None
    """``stage1`` or ``stage2``."""

    training: dict[str, Any] = field(default_factory=dict)
    """Recipe settings worth knowing (steps, loss weights, ...)."""

    evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Split -> last validation metrics."""


def export_projector(
    projector: AnyProjector,
    output_dir: Path,
    *,
    name: str,
    provenance: ProjectorProvenance | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``projector`` (a SpeechMapper projector or a ``speech_adapter``)
    as a self-contained directory; returns the card file.

    :param name: the asset card name users load it by.
    :raises ValueError: on a bad name, a non-empty ``output_dir`` without
        ``overwrite``, or a projector without a target LLM.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"`name` must be a fairseq2 asset name (letters, digits, `_`, `.`, `-`), but is '{name}'."
        )

    provenance = provenance or ProjectorProvenance()
    family = projector_family(projector)

    config = projector.config
    target_llm = provenance.target_llm or config.target_llm
    if target_llm is None:
        raise ValueError(
            "The projector names no target LLM (`target_llm`): export a projector trained by the stage-1 or stage-2 recipe, or pass `provenance.target_llm`."
        )
    if config.target_llm is not None and config.target_llm != target_llm:
        raise ValueError(
            f"The projector was trained for '{config.target_llm}', but the provenance names '{target_llm}'."
        )

    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ValueError(
            f"{output_dir} is not empty; choose a new directory or pass `overwrite`."
        )
    output_dir.mkdir(parents=True, exist_ok=True)

    sfm = _speech_encoder(config, provenance.sfm)

    model_config = asdict(config)
    model_config["target_llm"] = target_llm
    if sfm is not None:
        # A projector trained before configs recorded it gets the record from
        # the provenance, so that inference of the export defaults to it.
        model_config["speech_features"] = asdict(
            SpeechFeaturesConfig(
                encoder=sfm.card, layer=sfm.layer, layer_norm=sfm.layer_norm
            )
        )

    state_dict = {
        k: v.detach().to("cpu").contiguous() for k, v in projector.state_dict().items()
    }
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state_dict.values()})
    # Serialised in memory and written like every other output, so the file
    # follows the umask (safetensors' `save_file` leaves it private, 0600).
    atomic_write_bytes(
        output_dir / WEIGHTS_FILE,
        save(state_dict, metadata={"format": "pt", "speechmapper_card": name}),
    )

    summary = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "name": name,
        "model_family": family,
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "num_parameters": sum(p.numel() for p in projector.parameters()),
        "projector": model_config,
        "speech_encoder": asdict(sfm) if sfm else None,
        "target_llm": {"card": target_llm, "pad_token": provenance.pad_token},
        "stage": provenance.stage,
        "training": provenance.training,
        "evaluation": provenance.evaluation,
    }
    (output_dir / CONFIG_FILE).write_text(json.dumps(summary, indent=2) + "\n")

    card = {
        "name": name,
        "model_family": family,
        "model_config": model_config,
        "checkpoint": WEIGHTS_FILE,
    }
    card_file = output_dir / CARD_FILE
    card_file.write_text(
        f"# fairseq2 asset card of an exported projector ({family})\n"
        + yaml.safe_dump(card, sort_keys=False)
    )

    (output_dir / README_FILE).write_text(model_card_text(summary))

    return card_file


def _speech_encoder(
    config: ProjectorConfig, given: SpeechEncoderProvenance | None
) -> SpeechEncoderProvenance | None:
    """What the projector config records (``speech_features``), else what the
    provenance says.

    :raises ValueError: if both name features and they differ.
    """
    record = config.speech_features
    if record is None:
        return given

    sfm = SpeechEncoderProvenance(
        card=record.encoder,
        layer=record.layer,
        layer_norm=record.layer_norm,
        frame_averaging=config.frame_averaging,
    )
    if given is not None and given != sfm:
        raise ValueError(
            f"The projector records its speech features as {asdict(sfm)}, but the provenance names {asdict(given)}."
        )
    return sfm


def model_card_text(summary: Mapping[str, Any]) -> str:
    """The README of an export, from its ``config.json`` content."""
    name = summary["name"]
    projector = summary["projector"]
    sfm = summary.get("speech_encoder")
    llm = summary["target_llm"]
    family = summary.get("model_family", SPEECHMAPPER_FAMILY)
    if family == SPEECHMAPPER_FAMILY:
        what = "A SpeechMapper projector"
        shape = f"{len(projector['blocks'])} blocks"
    else:
        what = f"A `{projector['kind']}` adapter (Verdini et al. 2024)"
        shape = f"`{projector['kind']}` length adapter"

    lines = [
        f"# {name}",
        "",
        f"{what}: it maps speech-encoder features into the "
        "token-embedding space of a frozen LLM (fairseq2 family "
        f"`{family}`, {summary['num_parameters']:,} parameters, "
        f"{summary['dtype']}).",
        "",
        "## Components",
        "",
    ]
    if sfm:
        norm = "after" if sfm["layer_norm"] else "before"
        lines.append(
            f"- Speech encoder: `{sfm['card']}`, layer {sfm['layer']} ({norm} the "
            f"encoder's final LayerNorm), {sfm['frame_averaging']}:1 frame averaging."
        )
    else:
        lines.append("- Speech encoder: not recorded.")
    pad = llm.get("pad_token") or "the card's default"
    lines += [
        f"- Target LLM: `{llm['card']}` (pad target: {pad}).",
        f"- Projector: {projector['input_dim']}-d in, {projector['output_dim']}-d "
        f"out, {shape}.",
        "",
        "## Training",
        "",
    ]
    if summary.get("stage"):
        lines.append(f"- Stage: {summary['stage']}")
    for key, value in summary.get("training", {}).items():
        lines.append(f"- {key}: {value}")
    if len(lines) and lines[-1] == "":
        lines.append("Not recorded.")
    lines += ["", "## Validation (last evaluation of the run)", ""]
    evaluation = summary.get("evaluation") or {}
    if evaluation:
        keys = sorted({k for metrics in evaluation.values() for k in metrics})
        lines.append("| split | " + " | ".join(keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for split, metrics in sorted(evaluation.items()):
            cells = [_cell(metrics.get(k)) for k in keys]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    else:
        lines.append("Not recorded.")
    lines += [
        "",
        "## Use",
        "",
        "Register this directory as a fairseq2 asset source, then load it by name:",
        "",
        "```python",
        "from pathlib import Path",
        "from fairseq2 import init_fairseq2",
        "from fairseq2.composition import register_file_assets",
        "",
        "init_fairseq2(extras=lambda c: register_file_assets(c, Path('THIS_DIR')))",
        "",
        "from speechmapper_plugin.speech_llm import SpeechMapperPipeline",
        "",
        "pipeline = SpeechMapperPipeline.from_cards(",
        f"    {sfm['card'] if sfm else 'SPEECH_ENCODER_CARD'!r}, {name!r}, {llm['card']!r}",
        ")",
        "```",
        "",
        "In a recipe: `common.assets.extra_paths=[THIS_DIR]`.",
        "",
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def read_export_summary(directory: Path) -> dict[str, Any]:
    """The ``config.json`` of an export, checked for its format."""
    file = directory / CONFIG_FILE
    try:
        summary = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as ex:
        raise ValueError(f"{file} is not a readable projector export: {ex}") from ex
    if not isinstance(summary, dict) or summary.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{file} is not a SpeechMapper projector export.")
    return summary


def export_config(summary: Mapping[str, Any]) -> ProjectorConfig:
    """The projector configuration recorded in an export's ``config.json``."""
    data = dict(summary["projector"])
    features = data.get("speech_features")
    if isinstance(features, Mapping):
        data["speech_features"] = SpeechFeaturesConfig(**features)
    warm_start = data.get("warm_started_from")
    if isinstance(warm_start, Mapping):
        data["warm_started_from"] = WarmStartRecord(**warm_start)
    if summary.get("model_family", SPEECHMAPPER_FAMILY) != SPEECHMAPPER_FAMILY:
        return AdapterConfig(**data)
    data["blocks"] = [ProjectorBlockConfig(**b) for b in data["blocks"]]
    return SpeechMapperConfig(**data)


def last_validation_metrics(
    metrics_dir: Path, keep: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """Split -> the last record of ``metrics_dir/valid/<split>.jsonl``.

    :param keep: metric names to keep (all but timing fields if empty).
    """
    timing = {"Time", "Data Time", "Compute Time", "Lapse Time", "Wall Time"}
    result: dict[str, dict[str, Any]] = {}
    for file in sorted((metrics_dir / "valid").glob("*.jsonl")):
        records = [ln for ln in file.read_text().splitlines() if ln.strip()]
        if not records:
            continue
        last = json.loads(records[-1])
        result[file.stem] = {
            k: v
            for k, v in last.items()
            if k not in timing and (not keep or k in keep or k == "Step")
        }
    return result
