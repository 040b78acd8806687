"""What produced a set of hypotheses, recorded in the summary and checked on resume.

A summary is only comparable with another if the models (and the checkpoint
step behind ``last_checkpoint``), the prompts and the generation settings
are known; the same record guards resuming, so hypotheses of two different
configurations never end up in one file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from fairseq2.assets import AssetStore
from fairseq2.recipe.config import ReferenceModelSection

from recipes.generate.config import GenerateConfig
from recipes.generate.inputs import GenerateInputs
from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.generation import RENAMED_FIELDS

MAX_LISTED_INSTRUCTIONS = 20
"""Instruction files with more distinct instructions (one per QA question)
are recorded by count, hash and the most frequent ones."""

_STEP = re.compile(r"step_(\d+)")


def _plain(value: Any) -> Any:
    """JSON-ready: paths and dtypes as strings."""
    return json.loads(json.dumps(value, default=str))


def describe_model(
    section: ReferenceModelSection, store: AssetStore | None
) -> dict[str, Any]:
    """The section as configured, plus the checkpoint its card points at and
    that checkpoint's training step (``.../step_N/...``)."""
    described: dict[str, Any] = _plain(dataclasses.asdict(section))
    checkpoint: str | None = None
    if section.path is not None:
        checkpoint = str(section.path)
    elif store is not None and section.name is not None:
        card = store.maybe_retrieve_card(section.name)
        field = card.maybe_get_field("checkpoint") if card is not None else None
        if field is not None:
            checkpoint = str(field.as_uri())
    described["checkpoint"] = checkpoint
    match = _STEP.search(checkpoint or "")
    described["checkpoint_step"] = int(match.group(1)) if match else None
    return described


def describe_prompts(config: GenerateConfig, inputs: GenerateInputs) -> dict[str, Any]:
    counts = Counter(item.instruction for item in inputs.items)
    digest = hashlib.sha256("\n\x00".join(sorted(counts)).encode("utf-8")).hexdigest()
    return {
        "system_prompt": config.prompt.system_prompt,
        "task": config.prompt.task if config.input.manifest is not None else None,
        "target_lang": config.prompt.target_lang,
        "num_distinct_instructions": len(counts),
        "instructions": dict(counts.most_common(MAX_LISTED_INSTRUCTIONS)),
        "instructions_sha256": digest,
    }


def generation_settings(
    config: GenerateConfig, inputs: GenerateInputs, store: AssetStore | None
) -> dict[str, Any]:
    """Everything that decides the hypotheses (batching does not: generation
    is batch-invariant)."""
    return {
        "models": {
            "projector": describe_model(config.model, store),
            "sfm": describe_model(config.sfm, store),
            "llm": describe_model(config.llm, store),
        },
        "input": _plain(dataclasses.asdict(config.input)),
        "prompts": describe_prompts(config, inputs),
        "features": _plain(dataclasses.asdict(config.features)),
        "generation": {
            k: v
            for k, v in _plain(dataclasses.asdict(config.generation)).items()
            if k not in RENAMED_FIELDS
        },
        "seed": config.common.seed,
    }


class ResumeMismatchError(ValueError):
    """The output directory holds hypotheses made with other settings."""


def check_resume(path: Path, settings: dict[str, Any]) -> bool:
    """Compare with the settings an earlier run into the same directory wrote.

    :returns: whether the file exists already (a resumed run).
    :raises ResumeMismatchError: if they differ.
    """
    if not path.exists():
        return False
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if earlier != settings:
        differ = sorted(
            key
            for key in set(earlier) | set(settings)
            if earlier.get(key) != settings.get(key)
        )
        raise ResumeMismatchError(
            f"{path.parent} holds hypotheses of an earlier run with other settings (they differ in: {', '.join(differ)}; see {path}). Use a new output directory, or delete the earlier run's outputs to start over."
        )
    return True


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
