"""The evaluate recipe: generate (batched, sharded over ranks, resumable), then
score every task with the metrics of ``speechmapper_plugin.evaluation``."""

from __future__ import annotations

from typing import final

from fairseq2.data_type import DataType
from fairseq2.recipe.base import RecipeContext
from typing_extensions import override

from recipes.evaluate.config import EvaluateConfig
from recipes.evaluate.task import EvaluateUnit
from recipes.generate.inputs import GenerateInputs
from recipes.generate.recipe import GenerateRecipe
from recipes.generate.task import GenerateUnit
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.speech_llm import SpeechMapperPipeline


@final
class EvaluateRecipe(GenerateRecipe):
    @override
    def _create_unit(
        self,
        context: RecipeContext,
        pipeline: SpeechMapperPipeline,
        inputs: GenerateInputs,
        store: FeatureStore | None,
        settings: dict[str, object],
        num_examples: int,
    ) -> GenerateUnit:
        config = context.get_config_as(EvaluateConfig)

        judge_dtype: DataType | None = None
        if config.judge.dtype is not None:
            import torch

            judge_dtype = getattr(torch, config.judge.dtype)

        return EvaluateUnit(
            pipeline=pipeline,
            inputs=inputs,
            feature_store=store,
            gangs=context.gangs,
            output_dir=context.output_dir,
            num_examples=num_examples,
            settings=settings,
            scoring=config.scoring,
            judge=config.judge,
            judge_dtype=judge_dtype,
            device=context.device,
        )

    @property
    @override
    def config_kls(self) -> type[object]:
        return EvaluateConfig
