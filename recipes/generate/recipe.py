"""The generate recipe: SFM -> projector -> LLM over a manifest or an instruction file.

The projector may be a SpeechMapper projector or any ``speech_adapter``.
The config has no trained ``model`` section, so fairseq2 runs it as an
inference recipe (under ``torch.inference_mode``). The projector is the
``model`` reference section (``model.name=last_checkpoint`` with
``common.assets.prev_checkpoint_dir`` loads a stage-1/2 checkpoint); the
speech encoder and the LLM are reference sections ``sfm`` and ``llm``.

Order of work: the inputs are read, then the three configurations (card +
``config_overrides``), the chat template and the tokenizer are checked
against each other; only then are weights loaded, so a projector trained for
another LLM costs seconds, not an 8B-parameter load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from fairseq2.assets import AssetCard, AssetCardError, AssetStore
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.models import ModelFamily
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.composition import register_reference_model
from fairseq2.recipe.config import ReferenceModelSection
from fairseq2.recipe.error import RecipeError
from fairseq2.recipe.generator import Generator
from fairseq2.runtime.dependency import (
    DependencyContainer,
    DependencyResolver,
    wire_object,
)
from fairseq2.task import Task
from fairseq2.utils.config import ConfigMerger
from fairseq2.utils.structured import ValueConverter
from typing_extensions import override

from recipes.generate.config import GenerateConfig
from recipes.generate.inputs import GenerateInputs, read_inputs
from recipes.generate.settings import (
    ResumeMismatchError,
    check_resume,
    generation_settings,
    write_settings,
)
from recipes.generate.task import (
    SETTINGS_FILE,
    GenerateReader,
    GenerateUnit,
    examples_to_generate,
)
from speechmapper_plugin.data.feature_store import FeatureStore, FeatureStoreError
from speechmapper_plugin.data.usability import feature_store_problem
from speechmapper_plugin.llm import (
    ChatTemplate,
    chat_template_for_card,
    retrieve_llm_card,
)
from speechmapper_plugin.models.adapters import (
    PROJECTOR_CONFIG_CLASSES,
    ProjectorConfig,
    is_projector,
)
from speechmapper_plugin.models.sfm import SFM_CLASSES, SFM_CONFIG_CLASSES
from speechmapper_plugin.speech_llm import (
    IncompatibleComponentsError,
    SpeechMapperPipeline,
    component_problems,
    model_config_of,
    tokenizer_problems,
)


class GenerateRecipe(Recipe):
    @override
    def register(self, container: DependencyContainer) -> None:
        register_reference_model(container, "sfm")
        register_reference_model(container, "llm")

    @override
    def create_task(self, context: RecipeContext) -> Task:
        config = context.get_config_as(GenerateConfig)

        try:
            inputs = read_inputs(config.input, config.prompt)
        except (ValueError, OSError) as ex:
            raise RecipeError(str(ex)) from None

        store = _open_feature_store(config, inputs)

        llm_card = _retrieve_llm_card(config)

        try:
            template = chat_template_for_card(llm_card)
            tokenizer = load_tokenizer(llm_card)
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        projector_config = self._check_components(
            context, config, llm_card, template, tokenizer
        )

        if store is not None:
            problem = feature_store_problem(store, projector_config)
            if problem is not None:
                raise RecipeError(problem)

        settings = self._settings(context, config, inputs)

        # The heavy part: weights.
        projector = context.get_model()
        if not is_projector(projector):
            raise RecipeError(
                f"`model` must be a SpeechMapper projector (family `speechmapper`) or an adapter (family `speech_adapter`), but is a {type(projector).__name__}."
            )
        sfm = context.get_model("sfm")
        if not isinstance(sfm, SFM_CLASSES):
            raise RecipeError(
                f"`sfm` must be a speech encoder (family `sm4t_speech_encoder` or `whisper_encoder`), but is a {type(sfm).__name__}."
            )
        llm = context.get_model_as(TransformerLM, "llm")

        try:
            pipeline = SpeechMapperPipeline(
                sfm,
                projector,
                llm,
                tokenizer,
                llm_name=llm_card.name,
                template=template,
                sfm_layer=config.features.layer,
                sfm_layer_norm=config.features.layer_norm,
                sfm_dtype=config.sfm.dtype,
                device=context.device,
                generation=config.generation,
                system_prompt=config.prompt.system_prompt,
                batch_size=config.batching.max_batch_size,
            )
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        # Every rank reads what earlier runs did before any rank appends.
        mine = examples_to_generate(inputs, context.output_dir, context.gangs.dp)

        unit = self._create_unit(context, pipeline, inputs, store, settings, len(mine))

        reader = GenerateReader(
            mine,
            context.gangs,
            store=store,
            batching=config.batching,
            min_num_samples=pipeline.min_num_samples,
        )

        # fairseq2's Generator, wired as `RecipeContext.create_generator` does
        # but without its `generator` config section: autocast (its only
        # setting) does not apply, the pipeline runs each model in its dtype.
        return wire_object(
            context.resolver,
            Generator,
            model=projector,
            unit=unit,
            data_reader=reader,
            amp=False,
            amp_dtype=torch.float32,
            seed=config.common.seed,
        )

    def _create_unit(
        self,
        context: RecipeContext,
        pipeline: SpeechMapperPipeline,
        inputs: GenerateInputs,
        store: FeatureStore | None,
        settings: dict[str, object],
        num_examples: int,
    ) -> GenerateUnit:
        """The unit over the checked inputs and the loaded pipeline (a
        subclass scores the hypotheses: ``recipes.evaluate``)."""
        return GenerateUnit(
            pipeline=pipeline,
            inputs=inputs,
            feature_store=store,
            gangs=context.gangs,
            output_dir=context.output_dir,
            num_examples=num_examples,
            settings=settings,
        )

    @staticmethod
    def _settings(
        context: RecipeContext, config: GenerateConfig, inputs: GenerateInputs
    ) -> dict[str, object]:
        """What produces the hypotheses; a rerun into the same directory must
        match it (it then generates only what is missing)."""
        store = context.resolver.resolve(AssetStore)  # type: ignore[type-abstract]
        settings = generation_settings(config, inputs, store)
        path = context.output_dir / SETTINGS_FILE
        try:
            resumed = check_resume(path, settings)
        except ResumeMismatchError as ex:
            raise RecipeError(str(ex)) from None
        if not resumed and context.gangs.root.rank == 0:
            write_settings(path, settings)
        return settings

    @staticmethod
    def _check_components(
        context: RecipeContext,
        config: GenerateConfig,
        llm_card: AssetCard,
        template: ChatTemplate,
        tokenizer: Tokenizer,
    ) -> ProjectorConfig:
        """The configurations (cards + overrides) must fit; nothing is loaded."""
        resolver = context.resolver

        projector = _section_config(resolver, "model", config.model)
        if not isinstance(projector, PROJECTOR_CONFIG_CLASSES):
            raise RecipeError(
                f"`model` must be a SpeechMapper projector (family `speechmapper`) or an adapter (family `speech_adapter`), but its configuration is a {type(projector).__name__}."
            )

        sfm = _section_config(resolver, "sfm", config.sfm)
        if not isinstance(sfm, SFM_CONFIG_CLASSES):
            raise RecipeError(
                f"`sfm` must be a speech encoder (family `sm4t_speech_encoder` or `whisper_encoder`), but its configuration is a {type(sfm).__name__}."
            )

        llm = _section_config(resolver, "llm", config.llm)
        embed_dim = getattr(llm, "model_dim", None)
        vocab_size = getattr(llm, "vocab_size", None)
        if not isinstance(embed_dim, int) or not isinstance(vocab_size, int):
            raise RecipeError(
                f"`llm` must be a decoder-only LLM (e.g. family `llama`), but its configuration ({type(llm).__name__}) has no `model_dim`/`vocab_size`."
            )

        problems = component_problems(
            projector,
            llm_name=llm_card.name,
            llm_embed_dim=embed_dim,
            sfm_feature_dim=sfm.model_dim,
            projector_name=f"The projector ({_describe(config.model)})",
            sfm_name=f"the speech encoder ({_describe(config.sfm)})",
        ) + tokenizer_problems(
            tokenizer, template, llm_name=llm_card.name, vocab_size=vocab_size
        )
        if problems:
            raise RecipeError(str(IncompatibleComponentsError(problems)))

        return projector

    @property
    @override
    def config_kls(self) -> type[object]:
        return GenerateConfig


def _retrieve_llm_card(config: GenerateConfig) -> AssetCard:
    if config.llm.name is None:
        raise RecipeError("`llm.name` must name the LLM's asset card.")

    try:
        return retrieve_llm_card(config.llm.name)
    except ValueError as ex:
        raise RecipeError(str(ex)) from None


def _section_config(
    resolver: DependencyResolver, section_name: str, section: ReferenceModelSection
) -> object:
    """The configuration fairseq2 will build the section's model with: its card's
    (or arch's, for ``path``) plus ``config_overrides``."""
    try:
        if section.path is not None:
            config = _arch_config(resolver, section_name, section)
        else:
            store = resolver.resolve(AssetStore)  # type: ignore[type-abstract]
            card = store.maybe_retrieve_card(section.name or "")
            if card is None:
                raise RecipeError(
                    f"`{section_name}.name`: no asset card named '{section.name}'. Check the name with `python -m fairseq2.assets list` (for `last_checkpoint`, set `common.assets.prev_checkpoint_dir` to the training run's checkpoints directory)."
                )
            config = model_config_of(card)
    except (AssetCardError, ValueError) as ex:
        raise RecipeError(f"`{section_name}`: {ex}") from None

    if section.config_overrides is None:
        return config

    converter = resolver.resolve(ValueConverter)  # type: ignore[type-abstract]
    merger = resolver.resolve(ConfigMerger)  # type: ignore[type-abstract]

    try:
        merged = merger.merge(converter.unstructure(config), section.config_overrides)
        return converter.structure(merged, type(config))
    except (ValueError, TypeError) as ex:
        raise RecipeError(
            f"`{section_name}.config_overrides` cannot be applied: {ex}"
        ) from None


def _arch_config(
    resolver: DependencyResolver, section_name: str, section: ReferenceModelSection
) -> object:
    family = resolver.maybe_resolve(ModelFamily, key=section.family)  # type: ignore[type-abstract]
    if family is None:
        raise RecipeError(
            f"`{section_name}.family`: '{section.family}' is not a known model family."
        )

    if section.arch is None:
        return family.config_kls()

    config = family.maybe_get_arch_config(section.arch)
    if config is None:
        raise RecipeError(
            f"`{section_name}.arch`: '{section.arch}' is not an architecture of {section.family}."
        )

    return config


def _describe(section: ReferenceModelSection) -> str:
    return f"'{section.name}'" if section.path is None else str(section.path)


def _open_feature_store(
    config: GenerateConfig, inputs: GenerateInputs
) -> FeatureStore | None:
    needs_store = any(item.speech is not None for item in inputs.items)

    path: Path | None = config.input.feature_store
    if path is None:
        if needs_store:
            raise RecipeError(
                f"{inputs.source} has examples with feature-store `speech` ids; set `input.feature_store` to the store they come from."
            )
        return None

    try:
        return FeatureStore(path.expanduser())
    except (FeatureStoreError, OSError) as ex:
        raise RecipeError(f"`input.feature_store`: {ex}") from None
