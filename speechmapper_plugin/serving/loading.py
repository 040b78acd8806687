"""The server's model: a projector (export directory or card) with the LLM it
was trained for and the speech encoder it records, loaded by
:meth:`SpeechMapperPipeline.from_cards`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from speechmapper_plugin.export.projector import CARD_FILE, read_export_summary
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.serving.engine import SpeechEngine
from speechmapper_plugin.speech_llm import SpeechMapperPipeline, model_config_of


def register_assets(directories: Sequence[Path]) -> None:
    """Start fairseq2 with ``directories``' asset cards registered (once per
    process, before anything reads the asset store)."""
    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets
    from fairseq2.runtime.dependency import DependencyContainer

    for directory in directories:
        if not directory.is_dir():
            raise SystemExit(f"error: {directory} is not a directory.")

    def extras(container: DependencyContainer) -> None:
        for directory in directories:
            register_file_assets(container, directory)

    init_fairseq2(extras=extras)


def projector_cards(projector: str, llm: str | None) -> tuple[str, str]:
    """The projector's card name and the LLM's: an export directory's
    ``config.json`` names both; a card's config names its ``target_llm``.

    :raises ValueError: if the LLM is named nowhere.
    """
    directory = Path(projector)
    if directory.is_dir():
        if not (directory / CARD_FILE).is_file():
            raise ValueError(
                f"{directory} is not an export directory (no {CARD_FILE}); export a run with `speechmapper export`."
            )
        summary = read_export_summary(directory)
        name = str(summary["name"])
        target = (summary.get("target_llm") or {}).get("card")
    else:
        from fairseq2.assets import get_asset_store

        card = get_asset_store().maybe_retrieve_card(projector)
        if card is None:
            raise ValueError(
                f"No asset card named '{projector}' and no such directory: give an export directory or a projector card (`--asset-dir` registers a card directory)."
            )
        name = projector
        target = getattr(model_config_of(card), "target_llm", None)

    llm = llm or target
    if not llm:
        raise ValueError(
            f"The projector '{name}' does not name the LLM it was trained for: pass `--llm CARD`."
        )
    return name, str(llm)


def load_engine(
    projector: str,
    *,
    llm: str | None = None,
    speech_encoder: str | None = None,
    model_name: str | None = None,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
    max_new_tokens: int = 256,
    max_batch_size: int = 8,
    max_wait_ms: float = 10.0,
    step_delay_ms: float = 0.0,
) -> SpeechEngine:
    """Load the pipeline (checked by ``from_cards``) and start its engine."""
    name, llm_card = projector_cards(projector, llm)
    pipeline = SpeechMapperPipeline.from_cards(
        speech_encoder,
        name,
        llm_card,
        dtype=dtype,
        device=device,
        generation=GenerationConfig(max_new_tokens=max_new_tokens),
    )
    return SpeechEngine(
        pipeline,
        model_id=model_name or name,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        step_delay_ms=step_delay_ms,
    )
