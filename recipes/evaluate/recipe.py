"""The evaluate recipe: the generation recipe (batched, sharded over ranks,
resumable), whose scorer then scores every task with the metrics of
``speechmapper_plugin.evaluation``."""

from __future__ import annotations

from fairseq2.logging import log
from fairseq2.recipe.base import RecipeContext
from fairseq2.recipe.error import RecipeError

from recipes.evaluate.config import EvaluateConfig
from recipes.evaluate.task import EvaluationScorer
from recipes.generation import GenerationRecipe
from speechmapper_plugin.data.convert.europarl_st import read_segments
from speechmapper_plugin.data.convert.report import ConvertError
from speechmapper_plugin.speech_llm import SpeechMapperPipeline


def create_scorer(
    context: RecipeContext, pipeline: SpeechMapperPipeline
) -> EvaluationScorer:
    config = context.get_config_as(EvaluateConfig)
    segments = config.session_segments()
    sessions = None
    if segments is not None:
        try:
            sessions = read_segments(segments)
        except (ConvertError, OSError) as ex:
            raise RecipeError(f"`sessions.segments`: {ex}") from None
        log.info("Whole recordings are scored against the segments of {}.", segments)
    return EvaluationScorer(
        scoring=config.scoring,
        judge=config.judge,
        evaluated_llm=pipeline.llm_name,
        output_dir=context.output_dir,
        device=context.device,
        sessions=sessions,
    )


def evaluate_recipe() -> GenerationRecipe:
    """Generation with the evaluate config and its scorer."""
    return GenerationRecipe(EvaluateConfig, create_scorer)
