"""Stage-2 dataset family: instruction examples over cached speech features.

Each example (see :mod:`speechmapper_plugin.data.instructions`) names its speech
by feature-store id; the instruction is rendered in the target LLM's chat
template with the speech embeddings at the placeholder, and the response is
the CE target. A transcript becomes a target in one way only, the MSE targets'
(:class:`~speechmapper_plugin.llm.TargetTokens`, which stage 1 uses too): the
MSE term's ids are its ``encode``, and an example whose response *is* the
transcript (``response_is_transcript``, as the ASR builder writes) gets the
transcript written by its ``normalization`` as CE response, so the two terms
never train on different casings of one sentence. Examples are checked once,
when a split is prepared: missing
speech, empty responses, prompts too long for the LLM and speech too short for
the projector are counted, listed and skipped; a transcript longer than the
projector output keeps the example but drops its MSE term (counted too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch
from fairseq2.datasets import DataPipelineReader
from fairseq2.gang import Gangs

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
    SpeechBatch,
    SpeechReadOptions,
    Splits,
    create_speech_reader,
)
from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.datasets.speech_features import check_store_matches_projector
from speechmapper_plugin.llm import (
    ChatTemplate,
    TargetTokens,
    encode_response,
    encode_speech_prompt,
    normalize_transcript,
)
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


@dataclass(kw_only=True)
class InstructionBatch(SpeechBatch):
    """Stage 2's batch: the speech and MSE targets of :class:`SpeechBatch`
    (target ids as in stage 1's batches) and each example's prompt and
    response token ids."""

    prefix_ids: list[tuple[int, ...]]
    suffix_ids: list[tuple[int, ...]]
    response_ids: list[tuple[int, ...]]


class InstructionDataset:
    def __init__(
        self, splits: Mapping[str, Sequence[Path]], feature_stores: Sequence[Path]
    ) -> None:
        self._splits = Splits(splits, "instruction file")
        self._store_paths = [Path(p) for p in feature_stores]
        self._stores: list[FeatureStore] | None = None

    @property
    def splits(self) -> set[str]:
        return self._splits.names

    def stores(self) -> list[FeatureStore]:
        if self._stores is None:
            if not self._store_paths:
                raise ValueError(
                    "The instruction dataset lists no feature store; set `feature_stores` to the stores holding the examples' `speech` ids."
                )
            self._stores = [FeatureStore(p) for p in self._store_paths]
        return self._stores

    def prepare(
        self,
        split: str,
        *,
        targets: TargetTokens,
        template: ChatTemplate,
        projector: ProjectorConfig,
        max_seq_len: int,
        max_num_frames: int | None = None,
        system_prompt: str | None = None,
    ) -> PreparedInstructions:
        """Tokenises every example and keeps those stage 2 can train on.

        :param targets: the MSE targets' tokens: their tokenizer also encodes
            the prompts and responses, and their transcript policy writes both
            the MSE targets and the responses that are the transcript.
        :param max_seq_len: the LLM's longest sequence; longer prompts are skipped.
        :raises ValueError: if an example references audio instead of features,
            if an ``asr`` example does not say whether its response is the
            transcript while the policy changes transcripts, if a store does
            not match the projector, or if nothing is usable.
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

        tokenizer = targets.tokenizer
        examples = (e for path in self._splits[split] for e in read_instructions(path))
        for example in examples:
            report.num_examples += 1

            if example.speech is None:
                raise ValueError(
                    f"Example '{example.id}' of split '{split}' references audio ({example.audio}); stage 2 trains on cached features: extract them with `python -m recipes.extract_features` and refer to them by id (`speech`)."
                )

            response = response_text(example, targets)

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

            if not response.strip():
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
            response_ids = encode_response(tokenizer, template, response)

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
                ids = tuple(int(i) for i in targets.encode(example.transcript.strip()))
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

        report.check_usable()
        return prepared

    def create_reader(
        self, prepared: PreparedInstructions, gangs: Gangs, options: SpeechReadOptions
    ) -> DataPipelineReader[InstructionBatch]:
        return create_speech_reader(
            prepared.examples, self.stores(), collate_instructions, gangs, options
        )


def response_text(example: InstructionExample, targets: TargetTokens) -> str:
    """The CE response of ``example``: its transcript written by the MSE
    targets' policy when the response is the transcript, else the response.

    :raises ValueError: for an ``asr`` example that does not say whether its
        response is the transcript, when the policy would change the text
        (guessing would let CE and MSE train on different texts unseen).
    """
    if example.response_is_transcript:
        if not example.transcript:
            raise ValueError(
                f"Example '{example.id}' says its response is its transcript but has none."
            )
        return normalize_transcript(example.transcript.strip(), targets.normalization)

    if (
        example.response_is_transcript is None
        and example.task == "asr"
        and targets.normalization != "as_given"
    ):
        raise ValueError(
            f"The ASR example '{example.id}' does not say whether its response is its transcript, and `target_llm.transcript_normalization: {targets.normalization}` rewrites the MSE targets' transcripts: add `\"response_is_transcript\": true` to its line (the CE response is then the transcript, written as the MSE targets are) or `false` (the response is used as written), or rebuild the file with `python -m speechmapper_plugin.data.instructions asr`."
        )
    return example.response


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
