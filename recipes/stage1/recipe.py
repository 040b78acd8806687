"""Stage 1 as a fairseq2 recipe: the projector learns the LLM's embedding space
from cached SFM features, without the LLM ever running."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from typing import Any

from fairseq2.logging import log
from fairseq2.metrics import MetricBag
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.error import RecipeError
from fairseq2.recipe.trainer import TrainUnit
from fairseq2.task import Task
from torch import Tensor
from typing_extensions import final, override

from recipes.common import (
    CriterionEvalUnit,
    CriterionTrainUnit,
    get_projector,
    load_target_tokens,
    log_skip_report,
    record_speech_features,
    record_target_llm,
)
from recipes.stage1.config import Stage1Config, WarmStartSection
from recipes.stage1.criterion import Stage1Criterion
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.datasets.speech_features import (
    PreparedSplit,
    SpeechFeaturesDataset,
)
from speechmapper_plugin.losses import Stage1Weights
from speechmapper_plugin.models.adapters import (
    AdapterConfig,
    AnyProjector,
    adapter_kind,
)
from speechmapper_plugin.models.projector_base import WarmStartRecord
from speechmapper_plugin.models.speechmapper import check_llm_embedding_dim
from speechmapper_plugin.models.warm_start import (
    LoadedFreeze,
    WarmStartReport,
    WarmStartSource,
    load_fitting_tensors,
    read_warm_start_source,
)


@final
class Stage1Recipe(Recipe):
    @override
    def create_task(self, context: RecipeContext) -> Task:
        config = context.get_config_as(Stage1Config)

        projector = get_projector(context)

        section = config.target_llm

        log.info(
            "Loading the tokenizer and the token embeddings (only) of {}.", section.name
        )

        tokens = load_target_tokens(section, section.name)
        try:
            target_llm = tokens.read_table()
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        log.info(
            "Target embeddings: {} x {}, pad token id {}.",
            target_llm.num_embeddings,
            target_llm.embed_dim,
            target_llm.pad_idx,
        )

        try:
            # Reads `output_dim` only, which every projector config has.
            check_llm_embedding_dim(
                projector.config,  # type: ignore[arg-type]
                target_llm.embed_dim,
                target_llm.card_name,
            )
            # An adapter that predicts tokens (`ctc_compression`) predicts the
            # target LLM's; the kind's entry knows which vocabulary it has.
            if isinstance(projector.config, AdapterConfig):
                adapter_kind(projector.config.kind).check_llm_vocabulary(
                    projector.config, target_llm.num_embeddings, target_llm.card_name
                )
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        dataset = context.get_dataset_as(SpeechFeaturesDataset)

        ds = config.dataset

        record_speech_features(
            projector, training_stores(dataset, [ds.train_split, *ds.valid_splits])
        )
        started = warm_start(projector, config.warm_start)
        freeze = None
        if started is not None:
            projector.config = replace(
                projector.config,
                warm_started_from=warm_start_record(*started, config.warm_start),
            )
            freeze = freeze_loaded(projector, started[1], config.warm_start)
        # Writes the checkpoint card, with the warm-start record.
        record_target_llm(context, projector, target_llm.card_name)

        targets = target_llm.to(context.device)

        dp_model = context.get_data_parallel_model()

        train_budget = ds.max_num_frames if ds.batch_size is None else None
        valid_budget = train_budget
        if ds.max_num_valid_frames is not None and ds.batch_size is None:
            valid_budget = ds.max_num_valid_frames

        def prepare(split: str, max_num_frames: int | None) -> PreparedSplit:
            """Tokenises ``split`` and keeps what fits batches of
            ``max_num_frames`` (the budget its reader uses)."""
            try:
                prepared = dataset.prepare(
                    split,
                    encode=lambda text: target_llm.encode(text).tolist(),
                    projector=projector.config,
                    max_num_frames=max_num_frames,
                    untrainable_policy=ds.untrainable_policy,
                )
            except ValueError as ex:
                raise RecipeError(str(ex)) from None
            log_skip_report(context, prepared.report)
            return prepared

        train_split = prepare(ds.train_split, train_budget)

        train_reader = dataset.create_reader(
            ds.train_split,
            train_split,
            context.gangs,
            ds.train_read_options(config.common, config.trainer),
        )

        loss = config.loss
        per_token = projector.config.variable_length
        if per_token:
            log.info(
                "A variable-length `{}` adapter: stage 1 regresses one output per transcript token.",
                projector.config.kind,  # type: ignore[union-attr]
            )
        weights = Stage1Weights(
            alpha=loss.alpha,
            per_token=per_token,
            ctc_weight=loss.ctc_weight,
            ctc_temperature=loss.ctc_temperature,
            quantity_weight=loss.quantity_weight,
            adapter_ctc_weight=loss.adapter_ctc_weight,
        )

        unit: TrainUnit[Any] = CriterionTrainUnit(
            Stage1Criterion(dp_model, targets, weights)
        )
        if freeze is not None:
            unit = FreezingTrainUnit(unit, freeze)

        valid_units = []
        valid_readers = []

        for split in ds.valid_splits:
            if split == ds.train_split:
                # Read once; a smaller validation budget only narrows the view.
                prepared = train_split
                if valid_budget != train_budget:
                    try:
                        prepared = train_split.within_frames(
                            valid_budget, name=f"valid/{split}"
                        )
                    except ValueError as ex:
                        raise RecipeError(str(ex)) from None
                    log_skip_report(context, prepared.report)
            else:
                prepared = prepare(split, valid_budget)

            valid_readers.append(
                dataset.create_reader(
                    split,
                    prepared,
                    context.gangs,
                    ds.read_options(
                        seed=config.common.seed,
                        train=False,
                        max_num_frames=ds.max_num_valid_frames,
                    ),
                )
            )
            criterion = Stage1Criterion(
                dp_model, targets, weights, score_embeddings=True
            )
            valid_units.append(CriterionEvalUnit(criterion, split))

        return context.create_trainer(unit, train_reader, valid_units, valid_readers)

    @property
    @override
    def config_kls(self) -> type[object]:
        return Stage1Config


def warm_start(
    projector: AnyProjector, section: WarmStartSection
) -> tuple[WarmStartSource, WarmStartReport] | None:
    """Loads the fitting tensors of ``section.checkpoint`` into the fresh
    ``projector`` (whose config, ``target_llm`` included, stays its own);
    ``None`` without a warm start. Call it after
    :func:`record_speech_features`: the source's features must be the store's.

    :raises RecipeError: if the source cannot be read, fits nothing, or was
        trained on other features.
    """
    if section.checkpoint is None:
        return None
    try:
        source = read_warm_start_source(section.checkpoint)
    except ValueError as ex:
        raise RecipeError(str(ex)) from None

    problems = source.feature_problems(projector.config)
    if problems:
        raise RecipeError(
            f"The warm-start source {source.path} was trained on other speech features than this run's stores hold: {'; '.join(problems)}. Its trunk only knows its own features: train on a store extracted like the source's."
        )

    try:
        report = load_fitting_tensors(projector, source.state, section.keep_fresh)
    except ValueError as ex:
        raise RecipeError(str(ex)) from None

    log.info(
        "Warm start from {} (step {}, trained for '{}'): {}.",
        source.path,
        source.step,
        source.target_llm,
        report.summary(),
    )

    return source, report


def freeze_loaded(
    projector: AnyProjector, report: WarmStartReport, section: WarmStartSection
) -> LoadedFreeze | None:
    """The freeze of the loaded tensors for ``section.freeze_loaded_steps``."""
    if section.freeze_loaded_steps == 0:
        return None
    freeze = LoadedFreeze(projector, report.loaded, section.freeze_loaded_steps)
    log.info(
        "The {} loaded parameters stay frozen for the first {} steps.",
        freeze.num_parameters,
        section.freeze_loaded_steps,
    )
    return freeze


def warm_start_record(
    source: WarmStartSource, report: WarmStartReport, section: WarmStartSection
) -> WarmStartRecord:
    """What the projector config (hence the checkpoint card, later stages'
    cards and an export) records about the warm start."""
    return WarmStartRecord(
        checkpoint=str(source.path),
        step=source.step,
        target_llm=source.target_llm,
        num_loaded_tensors=len(report.loaded),
        fresh_tensors=sorted(report.fresh),
        keep_fresh=list(section.keep_fresh),
        freeze_loaded_steps=section.freeze_loaded_steps,
    )


@final
class FreezingTrainUnit(TrainUnit[Any]):
    """A train unit whose warm-started tensors stay frozen for its first steps."""

    def __init__(self, unit: TrainUnit[Any], freeze: LoadedFreeze) -> None:
        self._unit = unit
        self._freeze = freeze

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._unit.prepare_metric_bag(metric_bag)

    @override
    def set_step_nr(self, step_nr: int) -> None:
        self._freeze.set_step(step_nr)
        self._unit.set_step_nr(step_nr)

    @override
    def set_data_epoch_nr(self, data_epoch_nr: int) -> None:
        self._unit.set_data_epoch_nr(data_epoch_nr)

    @override
    def process_batch(
        self, batch: Any, metric_bag: MetricBag
    ) -> tuple[Tensor, int | None]:
        return self._unit.process_batch(batch, metric_bag)

    @override
    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        self._unit.process_metric_values(values)


def training_stores(
    dataset: SpeechFeaturesDataset, splits: list[str]
) -> list[FeatureStore]:
    """The feature stores of ``splits``, each once.

    :raises RecipeError: on an unknown split or an unreadable store.
    """
    stores: dict[str, FeatureStore] = {}
    try:
        for split in splits:
            for store in dataset.stores(split):
                stores.setdefault(str(store.path), store)
    except (ValueError, OSError) as ex:
        raise RecipeError(str(ex)) from None
    return list(stores.values())
