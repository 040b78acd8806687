"""The feature-extraction recipe: a fairseq2 ``Recipe`` running a custom ``Task``."""

from __future__ import annotations

import sys
from typing import Any, cast

from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.error import RecipeError
from fairseq2.task import Task, TaskStopException
from fairseq2.utils.structured import ValueConverter
from typing_extensions import override

from recipes.extract_features.config import ExtractFeaturesConfig
from speechmapper_plugin.datasets.audio_manifest import AudioManifestDataset
from speechmapper_plugin.extraction import (
    ExtractionStopped,
    FeatureExtraction,
    build_store_metadata,
)
from speechmapper_plugin.models.sfm import check_encoder_name, create_sfm_extractor


class ExtractFeaturesRecipe(Recipe):
    @override
    def create_task(self, context: RecipeContext) -> Task:
        config = context.get_config_as(ExtractFeaturesConfig)

        # The extractor of the configured speech encoder (SeamlessM4T or Whisper).
        features = config.features
        encoder = config.model.name or str(config.model.path)
        model = context.get_model()
        try:
            # The store records the encoder by name: it must say whether the
            # features come after SeamlessM4T's length adaptor.
            check_encoder_name(model, encoder)

            extractor = create_sfm_extractor(
                model,
                layer=features.layer,
                layer_norm=features.layer_norm,
                frame_averaging=features.frame_averaging,
                max_windows=features.max_windows,
                dtype=config.model.dtype,
                device=context.device,
            )
        except ValueError as ex:
            raise RecipeError(f"`model`/`features`: {ex}") from None

        dataset = context.get_dataset_as(AudioManifestDataset)

        split = dataset.read_split(config.dataset.split)

        store = config.store.path or context.output_dir / "features"
        store = store.expanduser().resolve()

        value_converter = context.resolver.resolve(ValueConverter)  # type: ignore[type-abstract]

        metadata = build_store_metadata(
            split,
            extractor,
            encoder=encoder,
            dtype=config.store.dtype,
            rows_per_shard=config.store.rows_per_shard,
            created_by=" ".join(["python -m recipes.extract_features", *sys.argv[1:]]),
            config=cast(dict[str, Any], value_converter.unstructure(config)),
        )

        extraction = FeatureExtraction(
            store=store,
            rows=split.rows,
            manifest_bad_rows=split.bad_rows,
            metadata=metadata,
            extractor=extractor,
            gangs=context.gangs,
            read_options=config.dataset,
            sort_by_length=config.dataset.sort_by_length,
            verify_finished_shards=config.store.verify_finished_shards,
            progress_reporter=context.progress_reporter,
        )

        return ExtractFeaturesTask(extraction)

    @property
    @override
    def config_kls(self) -> type[object]:
        return ExtractFeaturesConfig


class ExtractFeaturesTask(Task):
    """Runs one :class:`FeatureExtraction`; SIGUSR1 stops it between batches."""

    def __init__(self, extraction: FeatureExtraction) -> None:
        self._extraction = extraction

    @override
    def run(self) -> None:
        try:
            self._extraction.run()
        except ExtractionStopped:
            raise TaskStopException() from None

    @override
    def request_stop(self) -> None:
        self._extraction.request_stop()

    @property
    @override
    def step_nr(self) -> int:
        return self._extraction.num_batches

    @override
    def close(self) -> None:
        pass
