"""What a stage-1 or stage-2 run trained its projector on, read from the run.

The run's ``config.yaml`` names the target LLM, pad token, loss weights and
feature stores; ``metrics/valid/*.jsonl`` hold the validation results. The
speech encoder card, layer and LayerNorm come from the checkpoint's projector
config (``speech_features``, see :func:`export_projector`); for checkpoints
older than that record, from a feature store's ``store.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from speechmapper_plugin.data.feature_store import read_metadata
from speechmapper_plugin.export.projector import (
    ProjectorProvenance,
    SpeechEncoderProvenance,
    last_validation_metrics,
)

_VALIDATION_METRICS = (
    "embedding_wer",
    "cosine_word",
    "mse_word",
    "mse_pad",
    "ce",
    "mse",
    "Loss",
)


def read_run_provenance(run_dir: Path) -> ProjectorProvenance:
    """The provenance of the projector trained in ``run_dir``.

    :raises ValueError: if ``run_dir`` has no readable ``config.yaml``.
    """
    config_file = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as ex:
        raise ValueError(
            f"{config_file} cannot be read ({ex}); pass the output directory of a stage-1 or stage-2 run."
        ) from ex
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} is not a recipe configuration.")

    loss = _section(config, "loss")
    stage = "stage2" if "sigma" in loss else "stage1"

    target = _section(config, "target_llm")
    llm = target.get("name") or _section(config, "llm").get("name")

    training: dict[str, Any] = {
        "num_steps": _section(config, "regime").get("num_steps"),
        **{f"loss.{k}": v for k, v in loss.items()},
    }
    training = {k: v for k, v in training.items() if v is not None}

    return ProjectorProvenance(
        sfm=_speech_encoder(config),
        target_llm=llm,
        pad_token=target.get("pad_token"),
        stage=stage,
        training=training,
        evaluation=last_validation_metrics(run_dir / "metrics", _VALIDATION_METRICS),
    )


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def _speech_encoder(config: dict[str, Any]) -> SpeechEncoderProvenance | None:
    """From the first readable feature store of the run: the training split's
    (stage 1) or the instruction dataset's ``feature_stores`` (stage 2).

    Only for checkpoints whose projector config does not record its
    ``speech_features`` (trained before it did); the export takes the
    record when there is one."""
    dataset = _section(config, "dataset")
    overrides = dataset.get("config_overrides") or {}
    if not isinstance(overrides, dict):
        return None
    splits = overrides.get("splits")
    stores = list(overrides.get("feature_stores") or [])
    if isinstance(splits, dict):
        stores = list(splits.get(dataset.get("train_split", "train")) or []) + stores
    for store in stores:
        try:
            meta = read_metadata(Path(store))
        except (OSError, ValueError):
            continue
        return SpeechEncoderProvenance(
            card=meta.encoder,
            layer=meta.layer,
            layer_norm=meta.layer_norm,
            frame_averaging=meta.frame_averaging,
        )
    return None
