"""The generation recipe that ``recipes.generate`` and ``recipes.evaluate``
share: SFM -> projector -> LLM over a manifest or an instruction file, sharded
over ranks and resumable, the hypotheses scored by the evaluation (with a
:class:`RunScorer`: ``recipes.evaluate``).

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

What produced a set of hypotheses (:func:`generation_settings`) is recorded
in the summary and checked on resume: a summary is only comparable with
another if the models (and the checkpoint step behind ``last_checkpoint``),
the prompts and the generation settings are known, and hypotheses of two
configurations never end up in one file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import torch
from fairseq2.assets import AssetCard, AssetCardError, AssetStore
from fairseq2.data.tokenizers import Tokenizer
from fairseq2.datasets import DataReader
from fairseq2.logging import log
from fairseq2.models import ModelFamily
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.composition import register_reference_model
from fairseq2.recipe.config import ReferenceModelSection
from fairseq2.recipe.error import RecipeError
from fairseq2.recipe.generator import Generator, GeneratorUnit
from fairseq2.runtime.dependency import (
    DependencyContainer,
    DependencyResolver,
    wire_object,
)
from fairseq2.task import Task
from fairseq2.utils.config import ConfigMerger
from fairseq2.utils.structured import ValueConverter
from fairseq2.utils.validation import ValidationResult
from typing_extensions import override

from recipes.common import (
    DEFAULT_LLM_CARD,
    AlternativeInputs,
    InferenceRunSections,
    check_llm_card,
    check_read_options,
    load_llm_text_side,
)
from recipes.long_form import (
    LongFormReader,
    LongFormSection,
    LongFormUnit,
    split_long,
)
from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.feature_store import FeatureStore, FeatureStoreError
from speechmapper_plugin.data.usability import feature_store_problem
from speechmapper_plugin.datasets.waveform_reader import WaveformReadOptions
from speechmapper_plugin.generation import RENAMED_FIELDS, GenerationConfig
from speechmapper_plugin.generation_task import (
    SETTINGS_FILE,
    GenerateInputs,
    GenerateReader,
    GenerateUnit,
    InstructionPromptSection,
    RunScorer,
    examples_to_generate,
    read_inputs,
)
from speechmapper_plugin.generation_task.inputs import GenerateItem
from speechmapper_plugin.llm import ChatTemplate
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
from speechmapper_plugin.speech_llm.compatibility import resolve_speech_features

DEFAULT_SFM_CARD = "seamless_m4t_v2_large_speech_encoder"


@dataclass(kw_only=True)
class InputSection(AlternativeInputs):
    """What to generate for: an audio manifest or an instruction file."""

    manifest: Path | None = None
    """An audio manifest (``.tsv``/``.jsonl``, see
    ``speechmapper_plugin.data.manifest``); every row gets the instruction of
    ``prompt.task``. Malformed rows and unusable audio are skipped and listed."""

    root: Path | None = None
    """The directory relative audio paths of ``manifest`` are resolved against."""

    instructions: Path | None = None
    """An instruction file (JSONL of ``InstructionExample``: ``id``,
    ``instruction`` with ``<speech>``, ``audio`` path or ``speech`` id,
    optional ``response``, ``task``, ``target_lang``)."""

    feature_store: Path | None = None
    """The feature store that ``speech`` ids of ``instructions`` refer to."""

    CHOICES = {
        "manifest": "an audio manifest",
        "instructions": "an instruction JSONL file",
    }

    @override
    def validate(self) -> ValidationResult:
        result = super().validate()
        if self.manifest is None and self.root is not None:
            result.add_error("`input.root` applies to `input.manifest` only.")
        return result


@dataclass(kw_only=True)
class FeaturesSection:
    """Which speech-encoder features feed the projector: by default the ones
    it was trained on (the projector config's ``speech_features``, which the
    training stages record)."""

    layer: int | None = None
    """1-based encoder layer; default: the layer the projector was trained on
    (for a projector that does not record it: the encoder card's
    ``output_layer``, 24 for SeamlessM4T-v2 large, with a warning)."""

    layer_norm: bool | None = None
    """Apply the encoder's final LayerNorm; default: as the projector was
    trained (else the encoder card's, ``true``)."""

    allow_mismatch: bool = False
    """Run an encoder card (``sfm.name``), layer or LayerNorm choice other than
    the projector was trained on, with a warning, instead of refusing to
    start: its hypotheses are nonsense unless you know better."""


@dataclass(kw_only=True)
class SpeechEncoderSection(ReferenceModelSection):
    """The ``sfm`` section: neither ``name`` nor ``path`` set means the
    encoder card the projector was trained on."""

    @override
    def validate(self) -> ValidationResult:
        if self.name is None and self.path is None:
            return ValidationResult()
        return super().validate()


@dataclass(kw_only=True)
class BatchingSection(WaveformReadOptions):
    """How the audio reader batches (its options, with generation's defaults:
    the LLM runs on every example, so batches are smaller than in feature
    extraction); ``max_batch_size`` also bounds feature-store batches."""

    max_num_samples: int = 16_000 * 120
    """Audio per batch, in 16 kHz samples (120 s); examples are sorted by
    length so batches hold similar lengths."""

    max_batch_size: int = 16
    """Examples per batch (also for feature-store examples)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_read_options(result, self, "batching.")
        return result


@dataclass(kw_only=True)
class GenerateConfig(InferenceRunSections):
    model: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(name="last_checkpoint")
    )
    """The projector: by default the last checkpoint of the stage-1/2 run in
    ``common.assets.prev_checkpoint_dir``."""

    sfm: SpeechEncoderSection = field(default_factory=SpeechEncoderSection)
    """The speech encoder (fp32 by default); default: the card the projector
    was trained on (``seamless_m4t_v2_large_speech_encoder`` for a projector
    that does not record it). Another one is refused unless
    ``features.allow_mismatch``."""

    llm: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(
            name=DEFAULT_LLM_CARD, dtype=torch.bfloat16
        )
    )
    """The frozen LLM; must be the projector's ``target_llm``."""

    input: InputSection = field(default_factory=InputSection)

    prompt: InstructionPromptSection = field(default_factory=InstructionPromptSection)

    features: FeaturesSection = field(default_factory=FeaturesSection)

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Greedy by default (``beam_size: 1``); budgets and the repetition guard."""

    batching: BatchingSection = field(default_factory=BatchingSection)

    long_form: LongFormSection = field(default_factory=LongFormSection)
    """Rows longer than the models take: skipped (default) or cut into
    segments and joined (``long_form.enabled``; see ``recipes.long_form``)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_llm_card(result, self.llm)
        if self.input.instructions is not None and (
            self.prompt.instruction is not None or self.prompt.target_lang is not None
        ):
            result.add_error(
                "`prompt.instruction` and `prompt.target_lang` apply to `input.manifest` only; an instruction file carries its own instructions."
            )
        if self.gang.tensor_parallel_size != 1:
            result.add_error(
                "`gang.tensor_parallel_size` must be 1: every rank generates for its own share of the examples."
            )
        return result


MAX_LISTED_INSTRUCTIONS = 20
"""Instruction files with more distinct instructions (one per QA question)
are recorded by count, hash and the most frequent ones."""

_STEP = re.compile(r"step_(\d+)")


def plain(value: Any) -> Any:
    """JSON-ready: paths and dtypes as strings."""
    return json.loads(json.dumps(value, default=str))


def describe_model(
    section: ReferenceModelSection, store: AssetStore | None
) -> dict[str, Any]:
    """The section as configured, plus the checkpoint its card points at and
    that checkpoint's training step (``.../step_N/...``)."""
    described: dict[str, Any] = plain(dataclasses.asdict(section))
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
    is batch-invariant). Long-form segmenting is recorded when on (so that
    runs without it resume as before)."""
    settings: dict[str, Any] = {
        "models": {
            "projector": describe_model(config.model, store),
            "sfm": describe_model(config.sfm, store),
            "llm": describe_model(config.llm, store),
        },
        "input": plain(dataclasses.asdict(config.input)),
        "prompts": describe_prompts(config, inputs),
        "features": plain(dataclasses.asdict(config.features)),
        "generation": {
            k: v
            for k, v in plain(dataclasses.asdict(config.generation)).items()
            if k not in RENAMED_FIELDS
        },
        "seed": config.common.seed,
    }
    if config.long_form.enabled:
        settings["long_form"] = {
            "segmenter": plain(dataclasses.asdict(config.long_form.segmenter))
        }
    return settings


ScorerFactory = Callable[[RecipeContext, SpeechMapperPipeline], RunScorer]
"""Makes the scorer of a run once the pipeline is loaded (``recipes.evaluate``)."""


@final
class GenerationRecipe(Recipe):
    """Generates (``recipes.generate``); with a scorer factory, also scores
    (``recipes.evaluate``, whose config adds the scorer's sections)."""

    def __init__(
        self,
        config_kls: type[GenerateConfig] = GenerateConfig,
        scorer: ScorerFactory | None = None,
    ) -> None:
        self._config_kls = config_kls
        self._scorer = scorer

    @override
    def register(self, container: DependencyContainer) -> None:
        register_reference_model(container, "sfm")
        register_reference_model(container, "llm")

    @override
    def create_task(self, context: RecipeContext) -> Task:
        config = context.get_config_as(GenerateConfig)

        config.input.require()

        try:
            inputs = read_inputs(
                manifest=config.input.manifest,
                root=config.input.root,
                instructions=config.input.instructions,
                prompt=config.prompt,
            )
        except (ValueError, OSError) as ex:
            raise RecipeError(str(ex)) from None

        store = _open_feature_store(config, inputs)

        llm_card, template, tokenizer = load_llm_text_side(config.llm)

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
                allow_feature_mismatch=config.features.allow_mismatch,
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

        long: list[GenerateItem] = []
        if config.long_form.enabled:
            mine, long = split_long(mine, pipeline)
            log.info(
                "Rank {}: {} recordings longer than the models take go long-form ({} segments).",
                context.gangs.dp.rank,
                len(long),
                config.long_form.segmenter.kind,
            )

        generate_unit = GenerateUnit(
            pipeline=pipeline,
            inputs=inputs,
            feature_store=store,
            gangs=context.gangs,
            output_dir=context.output_dir,
            num_examples=len(mine) + len(long),
            settings=settings,
            scorer=None if self._scorer is None else self._scorer(context, pipeline),
        )

        generate_reader = GenerateReader(
            mine,
            context.gangs,
            store=store,
            options=config.batching,
            min_num_samples=pipeline.min_num_samples,
        )

        unit: GeneratorUnit[Any] = generate_unit
        reader: DataReader[Any] = generate_reader
        if config.long_form.enabled:
            section = config.long_form
            if section.batch_size is None:
                section.batch_size = config.batching.max_batch_size
            unit = LongFormUnit(
                generate_unit,
                pipeline=pipeline,
                section=section,
            )
            reader = LongFormReader(generate_reader, long)

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

    @staticmethod
    def _settings(
        context: RecipeContext, config: GenerateConfig, inputs: GenerateInputs
    ) -> dict[str, object]:
        """What produces the hypotheses; a rerun into the same directory must
        match what the earlier run wrote (it then generates only what is
        missing)."""
        store = context.resolver.resolve(AssetStore)  # type: ignore[type-abstract]
        settings = generation_settings(config, inputs, store)
        path = context.output_dir / SETTINGS_FILE
        if path.exists():
            earlier = json.loads(path.read_text(encoding="utf-8"))
            if earlier != settings:
                differ = sorted(
                    key
                    for key in set(earlier) | set(settings)
                    if earlier.get(key) != settings.get(key)
                )
                raise RecipeError(
                    f"{path.parent} holds hypotheses of an earlier run with other settings (they differ in: {', '.join(differ)}; see {path}). Use a new output directory, or delete the earlier run's outputs to start over."
                )
        elif context.gangs.root.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
            atomic_write_text(path, text)
        return settings

    @staticmethod
    def _check_components(
        context: RecipeContext,
        config: GenerateConfig,
        llm_card: AssetCard,
        template: ChatTemplate,
        tokenizer: Tokenizer,
    ) -> ProjectorConfig:
        """The configurations (cards + overrides) must fit; nothing is loaded.
        The speech encoder card, layer and LayerNorm left unset become the
        projector's (set in ``config``, so that the settings record them)."""
        resolver = context.resolver

        projector = _section_config(resolver, "model", config.model)
        if not isinstance(projector, PROJECTOR_CONFIG_CLASSES):
            raise RecipeError(
                f"`model` must be a SpeechMapper projector (family `speechmapper`) or an adapter (family `speech_adapter`), but its configuration is a {type(projector).__name__}."
            )

        _resolve_features(resolver, config, projector)

        sfm = _section_config(resolver, "sfm", config.sfm)
        if not isinstance(sfm, SFM_CONFIG_CLASSES):
            raise RecipeError(
                f"`sfm` must be a speech encoder (family `sm4t_speech_encoder` or `whisper_encoder`), but its configuration is a {type(sfm).__name__}."
            )

        # Without a record: the encoder's defaults (warned of above), named,
        # so that the settings record the layer used.
        features = config.features
        if features.layer is None:
            features.layer = sfm.output_layer
        if features.layer_norm is None:
            features.layer_norm = sfm.output_layer_norm

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
        return self._config_kls


def _resolve_features(
    resolver: DependencyResolver, config: GenerateConfig, projector: ProjectorConfig
) -> None:
    """Fills the encoder card, layer and LayerNorm left unset with those the
    projector was trained on; refuses other ones unless
    ``features.allow_mismatch``.

    :raises RecipeError: on a refused mismatch.
    """
    sfm, features = config.sfm, config.features
    record = projector.speech_features

    # An encoder given by path cannot be compared by card name.
    encoder = sfm.name if sfm.path is None else None
    if sfm.name is None and sfm.path is None:
        if record is None:
            log.warning(
                "The projector does not record the speech encoder it was trained on: using `{}`; set `sfm.name` if it was another.",
                DEFAULT_SFM_CARD,
            )
            sfm.name = DEFAULT_SFM_CARD
        else:
            sfm.name = record.encoder
        # What `context.get_model("sfm")` loads: fairseq2's `sfm` section, one
        # object per run (the recipe config is read again on each lookup).
        section = resolver.resolve(ReferenceModelSection, key="sfm")
        section.name = sfm.name

    try:
        _, features.layer, features.layer_norm = resolve_speech_features(
            projector,
            encoder=encoder,
            layer=features.layer,
            layer_norm=features.layer_norm,
            allow_mismatch=features.allow_mismatch,
            override="features.allow_mismatch=true",
            layer_option="features.layer",
        )
    except IncompatibleComponentsError as ex:
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
