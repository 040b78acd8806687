"""The EET recipe: a target LLM + a text set -> ``eet.json``, ``eet.md``, ``eet.png``.

An inference recipe (no trained ``model`` section): the LLM is the reference
model ``llm``, loaded by fairseq2 on the recipe's device and dtype. One
process measures the whole set (the LLM is only run forward; an 8B LLM fits
one GPU in bf16).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import final

from fairseq2.logging import log
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.composition import register_reference_model
from fairseq2.recipe.error import RecipeError
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.task import Task
from typing_extensions import override

from recipes.common import load_llm_text_side
from recipes.eet.config import EETRecipeConfig
from speechmapper_plugin.evaluation.eet import EETResult, run_eet
from speechmapper_plugin.evaluation.eet_inputs import read_eet_sentences
from speechmapper_plugin.evaluation.eet_report import format_eet_table, write_eet


@final
class EETRecipe(Recipe):
    @override
    def register(self, container: DependencyContainer) -> None:
        register_reference_model(container, "llm")

    @override
    def create_task(self, context: RecipeContext) -> Task:
        config = context.get_config_as(EETRecipeConfig)

        if context.gangs.root.size != 1:
            raise RecipeError(
                "The EET recipe runs in one process (the LLM only runs forward); start it without torchrun."
            )

        config.input.require()

        try:
            sentences = read_eet_sentences(
                text_file=config.input.text_file,
                manifest=config.input.manifest,
                max_sentences=config.input.max_sentences,
            )
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        card, template, tokenizer = load_llm_text_side(config.llm)

        llm = context.get_model_as(TransformerLM, "llm")

        measure = partial(
            run_eet, llm, tokenizer, template, sentences, config.eet, llm_name=card.name
        )

        return EETTask(
            measure,
            what=f"EET of {card.name}: {len(sentences)} sentences, {len(config.eet.variances)} noise levels, {config.eet.num_draws} draws.",
            output_dir=context.output_dir,
            marker_mse=config.marker_mse,
        )

    @property
    @override
    def config_kls(self) -> type[object]:
        return EETRecipeConfig


@final
class EETTask(Task):
    """Measures the EET once (``measure``), then writes and prints the results."""

    def __init__(
        self,
        measure: Callable[[], EETResult],
        *,
        what: str,
        output_dir: Path,
        marker_mse: float | None,
    ) -> None:
        """:param what: The measurement, for the log."""
        self._measure = measure
        self._what = what
        self._output_dir = output_dir
        self._marker_mse = marker_mse
        self._done = 0

    @override
    def run(self) -> None:
        log.info("{}", self._what)

        try:
            result = self._measure()
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        paths = write_eet(result, self._output_dir, self._marker_mse)

        table = format_eet_table(result)
        print(table, file=sys.stdout, flush=True)
        estimate = result.threshold_estimate
        log.info(
            "EET {} ({}); all-zero output's MSE (the sentences' embeddings' mean square) {:.3e}, embedding table's mean square {:.3e}.",
            "-"
            if estimate is None
            else f"{estimate.value:.3e} [{estimate.low:.3e}, {estimate.high:.3e}]",
            result.threshold_status,
            result.embedding_mean_square,
            result.table_mean_square,
        )
        log.info("EET written to {}, {} and {}.", *paths.values())

        self._done = 1

    @override
    def request_stop(self) -> None:
        pass

    @property
    @override
    def step_nr(self) -> int:
        return self._done

    @override
    def close(self) -> None:
        pass
