"""Stage-2 dataset family: instruction examples over cached speech features.

Each example (see :mod:`speechmapper_plugin.data.instructions`) names its speech
by feature-store id; the instruction is rendered in the target LLM's chat
template with the speech embeddings at the placeholder, and the response is
the CE target. Examples are checked once, when a split is prepared: missing
speech, empty responses, prompts too long for the LLM and speech too short for
the projector are counted, listed and skipped; a transcript longer than the
projector output keeps the example but drops its MSE term (counted too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch
from fairseq2.data.tokenizers import Tokenizer
from fairseq2.datasets import DataPipelineReader
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.gang import Gangs
from torch import Tensor

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.instructions import InstructionExample, read_instructions
from speechmapper_plugin.data.reasons import EMPTY_RESPONSE, MISSING_FEATURES
from speechmapper_plugin.data.usability import (
    Unusable,
    prompt_problem,
    speech_positions,
    transcript_problem,
    transcript_text_problem,
)
from speechmapper_plugin.datasets.batching import (
    SpeechReadOptions,
    create_speech_reader,
    select_rows,
)
from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.datasets.speech_features import check_store_matches_projector
from speechmapper_plugin.llm import ChatTemplate, encode_response, encode_speech_prompt
from speechmapper_plugin.models.adapters import ProjectorConfig
from speechmapper_plugin.padding import pad_sequences

INSTRUCTION_DATASET: Final = "speechmapper_instructions"


@dataclass(kw_only=True)
class InstructionDatasetConfig:
    splits: dict[str, list[Path]] = field(default_factory=dict)
    """Split name -> instruction JSONL files."""

    feature_stores: list[Path] = field(default_factory=list)
    """Feature stores in which the examples' ``speech`` ids are looked up."""


@dataclass(frozen=True)
class PreparedInstruction:
    id: str
    task: str | None
    store_index: int
    entry_index: int
    num_frames: int
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    transcript_ids: tuple[int, ...] | None
    """``None`` when the example has no transcript (or one that cannot fit)."""


@dataclass
class PreparedInstructions:
    examples: list[PreparedInstruction]
    report: SkipReport
    num_without_mse: int = 0
    """Kept examples whose transcript is missing or longer than the projector output."""


@dataclass
class InstructionBatch(SupportsDeviceTransfer):
    features: Tensor
    """``[B, T, D]`` pre-averaged SFM features, right-padded with zeros."""

    feature_lens: Tensor
    prefix_ids: list[tuple[int, ...]]
    suffix_ids: list[tuple[int, ...]]
    response_ids: list[tuple[int, ...]]

    target_ids: Tensor
    """``[B, S]`` the transcripts' MSE target ids, right-padded with 0, as in
    stage 1's batches."""

    target_lens: Tensor
    """``[B]`` tokens per row; 0 for an example without an MSE term."""

    ids: list[str]

    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        self.features = self.features.to(device, non_blocking=non_blocking)
        self.feature_lens = self.feature_lens.to(device, non_blocking=non_blocking)
        self.target_ids = self.target_ids.to(device, non_blocking=non_blocking)
        self.target_lens = self.target_lens.to(device, non_blocking=non_blocking)

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    def select(self, rows: Tensor) -> InstructionBatch:
        """The sub-batch of the rows where ``rows`` (a ``[B]`` bool mask) is true."""
        selection = select_rows(rows)
        features, feature_lens = selection.padded(self.features, self.feature_lens)
        target_ids, target_lens = selection.padded(self.target_ids, self.target_lens)
        return InstructionBatch(
            features=features,
            feature_lens=feature_lens,
            prefix_ids=selection.pick(self.prefix_ids),
            suffix_ids=selection.pick(self.suffix_ids),
            response_ids=selection.pick(self.response_ids),
            target_ids=target_ids,
            target_lens=target_lens,
            ids=selection.pick(self.ids),
        )


class InstructionDataset:
    def __init__(
        self, splits: Mapping[str, Sequence[Path]], feature_stores: Sequence[Path]
    ) -> None:
        self._split_paths = {k: [Path(p) for p in v] for k, v in splits.items()}
        self._store_paths = [Path(p) for p in feature_stores]
        self._stores: list[FeatureStore] | None = None

    @property
    def splits(self) -> set[str]:
        return set(self._split_paths)

    def stores(self) -> list[FeatureStore]:
        if self._stores is None:
            if not self._store_paths:
                raise ValueError(
                    "The instruction dataset lists no feature store; set `feature_stores` to the stores holding the examples' `speech` ids."
                )
            self._stores = [FeatureStore(p) for p in self._store_paths]
        return self._stores

    def read_examples(self, split: str) -> list[InstructionExample]:
        if split not in self._split_paths:
            raise ValueError(
                f"Split '{split}' is not in the dataset; known splits: {sorted(self._split_paths)}."
            )
        paths = self._split_paths[split]
        if not paths:
            raise ValueError(f"Split '{split}' lists no instruction file.")
        return [example for path in paths for example in read_instructions(path)]

    def prepare(
        self,
        split: str,
        *,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        encode_transcript: Callable[[str], Sequence[int]],
        projector: ProjectorConfig,
        max_seq_len: int,
        max_num_frames: int | None = None,
        system_prompt: str | None = None,
    ) -> PreparedInstructions:
        """Tokenises every example and keeps those stage 2 can train on.

        :param max_seq_len: the LLM's longest sequence; longer prompts are skipped.
        :raises ValueError: if an example references audio instead of features,
            if a store does not match the projector, or if nothing is usable.
        """
        stores = self.stores()
        for store in stores:
            check_store_matches_projector(store, projector)

        locations: dict[str, tuple[int, int]] = {}
        for store_index, store in enumerate(stores):
            for entry_index, entry in enumerate(store.entries):
                locations.setdefault(entry.id, (store_index, entry_index))

        report = SkipReport(split)
        prepared = PreparedInstructions([], report)

        for example in self.read_examples(split):
            report.num_examples += 1

            if example.speech is None:
                raise ValueError(
                    f"Example '{example.id}' of split '{split}' references audio ({example.audio}); stage 2 trains on cached features: extract them with `python -m recipes.extract_features` and refer to them by id (`speech`)."
                )

            location = locations.get(example.speech)
            if location is None:
                report.skip(
                    example.id,
                    Unusable(
                        MISSING_FEATURES,
                        f"the speech '{example.speech}' is in no feature store",
                    ),
                )
                continue

            if not example.response.strip():
                report.skip(
                    example.id, Unusable(EMPTY_RESPONSE, "the response is empty")
                )
                continue

            store_index, entry_index = location
            num_frames = stores[store_index].entries[entry_index].num_frames

            positions = speech_positions(
                projector, num_frames, pre_averaged=True, max_num_frames=max_num_frames
            )
            if isinstance(positions, Unusable):
                report.skip(example.id, positions)
                continue

            prompt = encode_speech_prompt(
                tokenizer, template, example.instruction, system_prompt
            )
            response_ids = encode_response(tokenizer, template, example.response)

            problem = prompt_problem(
                projector,
                len(prompt.prefix_ids),
                positions,
                len(prompt.suffix_ids),
                max_seq_len,
                response_len=len(response_ids),
            )
            if problem is not None:
                report.skip(example.id, problem)
                continue

            transcript_ids: tuple[int, ...] | None = None
            if (
                example.transcript
                and transcript_text_problem(example.transcript) is None
            ):
                ids = tuple(
                    int(i) for i in encode_transcript(example.transcript.strip())
                )
                if transcript_problem(len(ids), positions) is None:
                    transcript_ids = ids
            if transcript_ids is None:
                prepared.num_without_mse += 1

            prepared.examples.append(
                PreparedInstruction(
                    id=example.id,
                    task=example.task,
                    store_index=store_index,
                    entry_index=entry_index,
                    num_frames=num_frames,
                    prefix_ids=prompt.prefix_ids,
                    suffix_ids=prompt.suffix_ids,
                    response_ids=response_ids,
                    transcript_ids=transcript_ids,
                )
            )

        if not prepared.examples:
            raise ValueError(
                f"No usable example in split '{split}'. {report.summary()}"
            )

        return prepared

    def create_reader(
        self, prepared: PreparedInstructions, gangs: Gangs, options: SpeechReadOptions
    ) -> DataPipelineReader[InstructionBatch]:
        stores = self.stores()
        examples = prepared.examples

        return create_speech_reader(
            examples, stores, collate_instructions, gangs, options
        )


def collate_instructions(items: list[dict[str, Any]]) -> InstructionBatch:
    features, feature_lens = pad_sequences([item["features"] for item in items])
    examples: list[PreparedInstruction] = [item["example"] for item in items]
    target_ids, target_lens = pad_sequences(
        [torch.tensor(e.transcript_ids or (), dtype=torch.int64) for e in examples]
    )
    return InstructionBatch(
        features=features,
        feature_lens=feature_lens,
        prefix_ids=[e.prefix_ids for e in examples],
        suffix_ids=[e.suffix_ids for e in examples],
        response_ids=[e.response_ids for e in examples],
        target_ids=target_ids,
        target_lens=target_lens,
        ids=[e.id for e in examples],
    )


def open_instruction_dataset(config: InstructionDatasetConfig) -> InstructionDataset:
    return InstructionDataset(config.splits, config.feature_stores)
