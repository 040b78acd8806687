"""Stage-1 dataset family: cached SFM features paired with tokenised transcripts.

Every example is checked once, when a split is prepared, so that a run never
discovers unusable data mid-training: empty transcripts, features too short for
the projector, transcripts with more tokens than the projector emits positions
and utterances longer than a batch may hold are counted, listed and skipped
(or rejected, by policy). Non-finite features can only be seen when read; the
training and validation units drop and count those rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import torch
from fairseq2.datasets import DataPipelineReader
from fairseq2.gang import Gangs

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.reasons import TRANSCRIPT_TOO_LONG
from speechmapper_plugin.data.usability import (
    Unusable,
    batch_problem,
    feature_store_problem,
    speech_positions,
    transcript_problem,
    transcript_text_problem,
)
from speechmapper_plugin.datasets.batching import (
    SpeechBatch,
    SpeechReadOptions,
    Splits,
    create_speech_reader,
)
from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.models.adapters import ProjectorConfig
from speechmapper_plugin.padding import pad_sequences

SPEECH_FEATURES_DATASET: Final = "speechmapper_speech_features"

UntrainablePolicy = Literal["skip", "error"]


@dataclass(kw_only=True)
class SpeechFeaturesDatasetConfig:
    """Feature stores (written by ``recipes.extract_features``) per split."""

    splits: dict[str, list[Path]] = field(default_factory=dict)
    """Split name -> feature-store directories, e.g. ``{"train": [...], "dev": [...]}``."""


@dataclass(kw_only=True)
class SpeechFeaturesBatch(SpeechBatch):
    """A padded batch of pre-averaged SFM features and transcript token ids."""

    transcripts: list[str]


@dataclass(frozen=True)
class PreparedExample:
    store_index: int
    entry_index: int
    id: str
    num_frames: int
    transcript: str
    token_ids: list[int]


@dataclass
class PreparedSplit:
    """The usable examples of a split, and what was skipped."""

    examples: list[PreparedExample]
    report: SkipReport

    def within_frames(self, max_num_frames: int | None, *, name: str) -> PreparedSplit:
        """The examples that fit batches of ``max_num_frames`` frames.

        Validating on the training split with a smaller frame budget than
        training reads the split once and takes this view of it; the examples
        left out are counted in the view's report (``name``).

        :raises ValueError: if no example fits.
        """
        report = SkipReport(name, num_examples=len(self.examples))
        kept = []
        for example in self.examples:
            problem = batch_problem(example.num_frames, max_num_frames)
            if problem is None:
                kept.append(example)
            else:
                report.skip(example.id, problem)
        report.check_usable()
        return PreparedSplit(kept, report)


class SpeechFeaturesDataset:
    """One or more feature stores per split."""

    def __init__(self, splits: Mapping[str, Sequence[Path]]) -> None:
        self._splits = Splits(splits, "feature store")
        self._stores: dict[Path, FeatureStore] = {}

    @property
    def splits(self) -> set[str]:
        return self._splits.names

    def stores(self, split: str) -> list[FeatureStore]:
        paths = self._splits[split]
        for path in paths:
            if path not in self._stores:
                self._stores[path] = FeatureStore(path)
        return [self._stores[p] for p in paths]

    def prepare(
        self,
        split: str,
        *,
        encode: Callable[[str], Sequence[int]],
        projector: ProjectorConfig,
        max_num_frames: int | None = None,
        untrainable_policy: UntrainablePolicy = "skip",
    ) -> PreparedSplit:
        """Tokenises the transcripts and keeps the examples stage 1 can train on.

        :param encode: transcript -> token ids (no BOS/EOS unless wanted).
        :param projector: the projector the examples feed; its output lengths
            decide which transcripts fit.
        :param max_num_frames: the longest utterance a batch may hold.
        :param untrainable_policy: ``"skip"`` counts and skips transcripts
            longer than the projector output; ``"error"`` raises on the first.
        :raises ValueError: if a store does not match the projector, or if no
            example of the split is usable.
        """
        report = SkipReport(split)
        examples = []

        for store_index, store in enumerate(self.stores(split)):
            check_store_matches_projector(store, projector)

            for entry_index, entry in enumerate(store.entries):
                report.num_examples += 1

                transcript = entry.transcript.strip()
                problem = transcript_text_problem(transcript)
                if problem is not None:
                    report.skip(entry.id, problem)
                    continue

                positions = speech_positions(
                    projector,
                    entry.num_frames,
                    pre_averaged=True,
                    max_num_frames=max_num_frames,
                )
                if isinstance(positions, Unusable):
                    report.skip(entry.id, positions)
                    continue

                token_ids = list(encode(transcript))
                problem = transcript_problem(len(token_ids), positions)
                if problem is not None:
                    if (
                        problem.reason == TRANSCRIPT_TOO_LONG
                        and untrainable_policy == "error"
                    ):
                        raise ValueError(
                            f"Example '{entry.id}' of split '{split}' cannot be trained on ({problem.detail}); set `untrainable_policy: skip` to skip such examples."
                        )
                    report.skip(entry.id, problem)
                    continue

                examples.append(
                    PreparedExample(
                        store_index=store_index,
                        entry_index=entry_index,
                        id=entry.id,
                        num_frames=entry.num_frames,
                        transcript=transcript,
                        token_ids=token_ids,
                    )
                )

        report.check_usable()
        return PreparedSplit(examples, report)

    def create_reader(
        self,
        split: str,
        prepared: PreparedSplit,
        gangs: Gangs,
        options: SpeechReadOptions,
    ) -> DataPipelineReader[SpeechFeaturesBatch]:
        """Length-bucketed, shuffled batches of this rank's share of ``prepared``."""
        return create_speech_reader(
            prepared.examples,
            self.stores(split),
            collate_speech_features,
            gangs,
            options,
        )


def collate_speech_features(items: list[dict[str, Any]]) -> SpeechFeaturesBatch:
    features, feature_lens = pad_sequences([item["features"] for item in items])
    examples: list[PreparedExample] = [item["example"] for item in items]
    target_ids, target_lens = pad_sequences(
        [torch.tensor(e.token_ids, dtype=torch.int64) for e in examples]
    )
    return SpeechFeaturesBatch(
        features=features,
        feature_lens=feature_lens,
        target_ids=target_ids,
        target_lens=target_lens,
        ids=[e.id for e in examples],
        transcripts=[e.transcript for e in examples],
    )


def check_store_matches_projector(
    store: FeatureStore, projector: ProjectorConfig
) -> None:
    """Raises if a store's features cannot feed ``projector``."""
    problem = feature_store_problem(store, projector)
    if problem is not None:
        raise ValueError(problem)


def open_speech_features_dataset(
    config: SpeechFeaturesDatasetConfig,
) -> SpeechFeaturesDataset:
    return SpeechFeaturesDataset(config.splits)
