"""Helpers the training recipes share."""

from __future__ import annotations

from dataclasses import replace

from fairseq2.checkpoint import ModelMetadataDumper
from fairseq2.logging import log
from fairseq2.recipe.base import RecipeContext
from fairseq2.recipe.error import RecipeError

from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.models.speechmapper import (
    SPEECHMAPPER_FAMILY,
    SpeechMapperProjector,
)


def record_target_llm(
    context: RecipeContext, projector: SpeechMapperProjector, llm_card: str
) -> None:
    """Names the target LLM in the projector config and in the checkpoint card
    (``checkpoints/model.yaml``), so later stages and inference can check it.

    :raises RecipeError: if the projector was trained for another LLM.
    """
    current = projector.config.target_llm
    if current is not None and current != llm_card:
        raise RecipeError(
            f"The projector was trained for the target LLM '{current}', but this run targets '{llm_card}'; its speech embeddings live in another embedding space. Use a projector trained for '{llm_card}' (stage 1) or target '{current}'."
        )

    projector.config = replace(projector.config, target_llm=llm_card)

    if context.gangs.root.rank == 0:
        dumper = context.resolver.resolve(ModelMetadataDumper)
        dumper.dump(
            context.output_dir.joinpath("checkpoints"),
            SPEECHMAPPER_FAMILY,
            projector.config,
        )


def log_skip_report(context: RecipeContext, report: SkipReport) -> None:
    """Logs a split's skip summary and lists the skipped examples in
    ``OUT/skipped/<split>.tsv``."""
    log.info("Dataset {}", report.summary())

    if report.num_skipped and context.gangs.root.rank == 0:
        path = context.output_dir.joinpath(f"skipped/{report.split}.tsv")
        report.write_tsv(path)
        log.warning(
            "{} skipped examples of '{}' are listed in {}.",
            report.num_skipped,
            report.split,
            path,
        )
