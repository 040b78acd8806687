"""The evaluate recipe: the generation recipe (batched, sharded over ranks,
resumable), whose scorer then scores every task with the metrics of
``speechmapper_plugin.evaluation``."""

from __future__ import annotations

from fairseq2.recipe.base import RecipeContext

from recipes.evaluate.config import EvaluateConfig
from recipes.evaluate.task import EvaluationScorer
from recipes.generation import GenerationRecipe
from speechmapper_plugin.speech_llm import SpeechMapperPipeline


def create_scorer(
    context: RecipeContext, pipeline: SpeechMapperPipeline
) -> EvaluationScorer:
    config = context.get_config_as(EvaluateConfig)
    return EvaluationScorer(
        scoring=config.scoring,
        judge=config.judge,
        evaluated_llm=pipeline.llm_name,
        output_dir=context.output_dir,
        device=context.device,
    )


def evaluate_recipe() -> GenerationRecipe:
    """Generation with the evaluate config and its scorer."""
    return GenerationRecipe(EvaluateConfig, create_scorer)
