"""Stage 1 as a fairseq2 recipe: the projector learns the LLM's embedding space
from cached SFM features, without the LLM ever running."""

from __future__ import annotations

from fairseq2.logging import log
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.error import RecipeError
from fairseq2.task import Task
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
from recipes.stage1.config import Stage1Config
from recipes.stage1.criterion import Stage1Criterion
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.datasets.speech_features import (
    PreparedSplit,
    SpeechFeaturesDataset,
)
from speechmapper_plugin.losses import Stage1Weights
from speechmapper_plugin.models.adapters import AdapterConfig, adapter_kind
from speechmapper_plugin.models.speechmapper import check_llm_embedding_dim


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

        unit = CriterionTrainUnit(Stage1Criterion(dp_model, targets, weights))

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
