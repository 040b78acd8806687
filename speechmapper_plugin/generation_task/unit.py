"""The generation recipes' work, run by fairseq2's ``Generator`` task.

Examples are sorted by length (longest first) and dealt round-robin to the
data-parallel ranks (``gangs.dp``), so ranks get similar amounts of work and
batches hold similar lengths. fairseq2's ``Generator`` drives the run: it
seeds the random generators (``common.seed``; sampling draws from them), reads
this rank's batches from a :class:`GenerateReader`, hands each to the
:class:`GenerateUnit`, reports progress, stops between batches on SIGUSR1 and
records the unit's counts as ``generation`` metrics. The unit appends to this
rank's part files (hypotheses and skipped examples, :mod:`.parts`), flushed
after every batch; at the end it waits for every rank and rank 0 merges the
parts in input order into ``hypotheses.jsonl``, lists every skipped example in
``skipped.tsv`` and writes ``summary.json`` (with a :class:`RunScorer`, the
scores too: ``recipes.evaluate``).

**Resuming.** A run into an output directory that already holds part files
(an interrupted run) or ``hypotheses.jsonl`` (a finished one) generates only
the examples none of them has (:func:`examples_to_generate`); the merged
result equals an uninterrupted run's (for sampling: the remaining examples
draw from a freshly seeded generator). The recipes refuse to resume with
settings that change hypotheses (``generation_settings.json``).
"""

from __future__ import annotations

import json
import shutil
import time
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, final

import torch
from fairseq2.datasets import DataReader
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.error import InternalError, NotSupportedError
from fairseq2.gang import Gang, Gangs
from fairseq2.logging import log
from fairseq2.metrics import MetricBag, Sum
from fairseq2.recipe.generator import GeneratorUnit
from torch import Tensor
from typing_extensions import Self, override

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.bad_rows_tsv import save_bad_rows_tsv
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.data.reasons import MISSING_FEATURES
from speechmapper_plugin.datasets.waveform_reader import (
    WaveformBatch,
    WaveformReadOptions,
    create_waveform_reader,
)
from speechmapper_plugin.generation_task.inputs import GenerateInputs, GenerateItem
from speechmapper_plugin.generation_task.parts import PARTS_DIR, RankParts, read_parts
from speechmapper_plugin.generation_task.summary import format_summary, summarize
from speechmapper_plugin.speech_llm import (
    PipelineResult,
    SkippedInput,
    SpeechMapperPipeline,
)

HYPOTHESES_FILE = "hypotheses.jsonl"
SKIPPED_FILE = "skipped.tsv"
SUMMARY_FILE = "summary.json"
SETTINGS_FILE = "generation_settings.json"

PROGRESS_LOG_INTERVAL_S = 60.0
"""Log this rank's progress at most this often (the progress bar is off in
batch jobs)."""


def examples_to_generate(
    inputs: GenerateInputs, output_dir: Path, gang: Gang
) -> list[GenerateItem]:
    """This rank's share of the examples that earlier runs into
    ``output_dir`` have neither generated nor skipped.

    Every rank has read what is done before this returns, so no rank can
    append to its part file while another still reads them.
    """
    earlier_records, earlier_skipped = read_earlier(inputs, output_dir)
    done = {str(r["id"]) for r in earlier_records}
    done.update(b.id for b in earlier_skipped if b.id is not None)

    gang.barrier()

    todo = [item for item in inputs.items if item.id not in done]
    if done:
        log.info(
            "Rank {}: resuming; {} of {} examples are done already.",
            gang.rank,
            len(inputs.items) - len(todo),
            len(inputs.items),
        )

    # This rank's examples: longest first, dealt round-robin.
    mine = sorted(todo, key=lambda item: -item.length_hint())[gang.rank :: gang.size]

    log.info(
        "Rank {}: {} of {} examples to generate.",
        gang.rank,
        len(mine),
        len(inputs.items),
    )

    return mine


def make_record(item: GenerateItem, result: PipelineResult) -> dict[str, Any]:
    """One line of ``hypotheses.jsonl``."""
    record: dict[str, Any] = {"id": item.id, "task": item.task}
    if item.lang is not None:
        record["lang"] = item.lang
    if item.target_lang is not None:
        record["target_lang"] = item.target_lang
    if item.audio is not None:
        record["audio"] = str(item.audio.audio)
    if item.speech is not None:
        record["speech"] = item.speech
    record["instruction"] = item.instruction
    if item.question is not None:
        record["question"] = item.question
    if item.options is not None:
        record["options"] = list(item.options)
    record["hypothesis"] = result.text
    if item.reference is not None:
        record["reference"] = item.reference
    if item.answers is not None:
        record["answers"] = list(item.answers)
    if item.transcript is not None and item.transcript != item.reference:
        record["transcript"] = item.transcript
    record["stop_reason"] = result.stop_reason
    record["repetition_stopped"] = result.repetition_stopped
    record["max_length_reached"] = result.max_length_reached
    record["num_speech_positions"] = result.num_speech_positions
    record["num_generated_tokens"] = len(result.token_ids)
    return record


@dataclass
class GenerateBatch(SupportsDeviceTransfer):
    """Examples to generate in one pipeline call: decoded audio (with the
    rows that could not be read) or feature-store examples."""

    items: list[GenerateItem]
    """The examples of the batch; for audio, in the order of ``audio.audio``."""

    audio: WaveformBatch | None = None

    skipped: list[BadRow] = field(default_factory=list)
    """Examples set aside while reading (unreadable audio)."""

    @override
    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        """Nothing to move: the pipeline places each model's inputs itself
        (the speech encoder and the LLM may use different dtypes)."""

    @property
    def num_examples(self) -> int:
        return len(self.items) + len(self.skipped)


BatchT = TypeVar("BatchT", bound=SupportsDeviceTransfer)


class OnePassReader(DataReader[BatchT], Generic[BatchT]):
    """A generation reader: one batch per step from :meth:`_read`, read again
    from the start on :meth:`reset`, no reader state (a generate run resumes
    from its part files)."""

    def __init__(self) -> None:
        self._batches = self._read()

    @abstractmethod
    def _read(self) -> Iterator[BatchT]:
        """This rank's batches, in order."""

    @override
    def __iter__(self) -> Self:
        return self

    @override
    def __next__(self) -> list[BatchT]:
        return [next(self._batches)]

    @override
    def reset(self) -> None:
        self._batches = self._read()

    @override
    def state_dict(self) -> dict[str, object]:
        raise NotSupportedError(
            "A generate run resumes from its part files, not from a reader state."
        )

    @override
    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        raise NotSupportedError(
            "A generate run resumes from its part files, not from a reader state."
        )

    @property
    @override
    def num_accumulate(self) -> int:
        return 1


@final
class GenerateReader(OnePassReader[GenerateBatch]):
    """This rank's batches: its audio examples (decoded in parallel and
    batched by length by :func:`create_waveform_reader`), then its
    feature-store examples (longest first, ``max_batch_size`` at a time).

    Ranks read different numbers of batches and never synchronise here.
    """

    def __init__(
        self,
        items: Sequence[GenerateItem],
        gangs: Gangs,
        *,
        store: FeatureStore | None,
        options: WaveformReadOptions,
        min_num_samples: int,
    ) -> None:
        """:param options: The audio reader's; ``max_batch_size`` also bounds
        feature-store batches."""
        self._audio_items = [item for item in items if item.audio is not None]
        self._feature_items = [item for item in items if item.speech is not None]
        self._gangs = gangs
        self._store = store
        self._options = options
        self._min_num_samples = min_num_samples
        super().__init__()

    @override
    def _read(self) -> Iterator[GenerateBatch]:
        if self._audio_items:
            yield from self._read_audio()
        if self._feature_items:
            yield from self._read_features()

    def _read_audio(self) -> Iterator[GenerateBatch]:
        items = self._audio_items
        reader = create_waveform_reader(
            [item.audio for item in items if item.audio is not None],
            self._gangs,
            min_num_samples=self._min_num_samples,
            options=self._options,
        )
        for batches in reader:
            for batch in batches:
                yield GenerateBatch(
                    [items[p] for p in batch.audio_positions],
                    audio=batch,
                    skipped=list(batch.skipped),
                )

    def _read_features(self) -> Iterator[GenerateBatch]:
        store = self._store
        if store is None:
            return

        found: list[tuple[GenerateItem, int]] = []
        missing: list[BadRow] = []
        for item in self._feature_items:
            if item.speech is None or item.speech not in store:
                missing.append(
                    BadRow(
                        item.line_no,
                        item.id,
                        MISSING_FEATURES,
                        f"the feature store {store.path} has no utterance '{item.speech}'",
                    )
                )
            else:
                found.append((item, store.entry(item.speech).num_frames))

        if missing:
            yield GenerateBatch([], skipped=missing)

        found.sort(key=lambda pair: -pair[1])

        size = self._options.max_batch_size
        for start in range(0, len(found), size):
            yield GenerateBatch([item for item, _ in found[start : start + size]])


class RunScorer(Protocol):
    """Scores the merged hypotheses into the summary (``recipes.evaluate``)."""

    def __call__(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """Replaces or adds to the entries of ``summary``; may write files of
        its own next to it."""


@final
class GenerateUnit(GeneratorUnit[GenerateBatch]):
    """Generates a batch and appends its hypotheses and skipped examples to
    this rank's part files; :meth:`finalize` merges every rank's parts."""

    def __init__(
        self,
        *,
        pipeline: SpeechMapperPipeline,
        inputs: GenerateInputs,
        feature_store: FeatureStore | None,
        gangs: Gangs,
        output_dir: Path,
        num_examples: int,
        settings: dict[str, Any],
        scorer: RunScorer | None = None,
    ) -> None:
        """
        :param num_examples: This rank's number of examples (for progress lines).
        :param settings: What produced the hypotheses (models, prompts,
            generation); written into the summary.
        :param scorer: Scores the merged hypotheses into the summary.
        """
        self._pipeline = pipeline
        self._inputs = inputs
        self._store = feature_store
        self._gangs = gangs
        self._output_dir = output_dir
        self._settings = settings
        self._scorer = scorer
        self._num_mine = num_examples
        self._num_done = 0
        self._start = time.monotonic()
        self._last_log = self._start

        self._parts = RankParts(output_dir, gangs.dp.rank)

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        metric_bag.add("num_examples", Sum())
        metric_bag.add("num_skipped", Sum())

    @override
    def process_batch(self, batch: GenerateBatch, metric_bag: MetricBag) -> None:
        items = batch.items
        names = [item.id for item in items]
        instructions = [item.instruction for item in items]

        # The batch as read is one forward pass; unusable inputs are skipped.
        outcomes: list[PipelineResult | SkippedInput] = []
        if items:
            outcomes = self._pipeline.run(
                [audio.waveform for audio in batch.audio.audio]
                if batch.audio is not None
                else [self._read_features(item) for item in items],
                instructions,
                on_error="skip",
                features=batch.audio is None,
                names=names,
                batch_size=len(items),
            )

        skipped = list(batch.skipped)
        ready: list[GenerateItem] = []
        results: list[PipelineResult] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, SkippedInput):
                skipped.append(outcome.error.problem.bad_row(item.line_no, item.id))
            else:
                ready.append(item)
                results.append(outcome)

        self._parts.append(
            (
                make_record(item, result)
                for item, result in zip(ready, results, strict=True)
            ),
            skipped,
        )

        metric_bag.get("num_examples", Sum).update(torch.tensor(len(ready)))
        metric_bag.get("num_skipped", Sum).update(torch.tensor(len(skipped)))

        self._log_progress(batch.num_examples)

    def append(self, records: Iterable[dict[str, Any]], skipped: list[BadRow]) -> None:
        """Adds records and skips made outside :meth:`process_batch` (a
        long-form row) to this rank's parts, merged and resumed like the rest."""
        self._parts.append(records, skipped)

    def _read_features(self, item: GenerateItem) -> Tensor:
        store = self._store
        if store is None or item.speech is None:
            raise InternalError(
                f"Feature-store example '{item.id}' without a feature store or `speech` id."
            )  # the recipe checks both before loading models
        return store.read(store.entry(item.speech))

    def _log_progress(self, count: int) -> None:
        self._num_done += count

        now = time.monotonic()
        if now - self._last_log < PROGRESS_LOG_INTERVAL_S:
            return
        self._last_log = now

        log.info(
            "Rank {}: {}/{} examples done ({} generated, {} skipped), {:.1f} examples/s.",
            self._gangs.dp.rank,
            self._num_done,
            self._num_mine,
            self._parts.num_records,
            self._parts.num_skipped,
            self._num_done / max(now - self._start, 1e-9),
        )

    @override
    def finalize(self, metric_bag: MetricBag) -> None:
        """Close this rank's parts; once every rank has, rank 0 merges them."""
        self._parts.close()

        log.info(
            "Rank {}: generated {}, skipped {}.",
            self._gangs.dp.rank,
            self._parts.num_records,
            self._parts.num_skipped,
        )

        self._gangs.dp.barrier()

        if self._gangs.dp.rank == 0:
            self._merge()

    def _merge(self) -> None:
        order = {item.id: i for i, item in enumerate(self._inputs.items)}

        found, found_skipped = read_earlier(self._inputs, self._output_dir)

        # One record per current example (a rerun may find one twice: in a
        # part and in the hypotheses of a merge it interrupted).
        by_id: dict[str, dict[str, Any]] = {}
        for record in found:
            if record["id"] in order:
                by_id.setdefault(record["id"], record)
        records = sorted(by_id.values(), key=lambda r: order[r["id"]])

        skipped = sorted(
            set(self._inputs.bad_rows)
            | {b for b in found_skipped if b.id not in by_id},
            key=lambda b: (b.line_no, b.id or "", b.reason),
        )

        out = self._output_dir
        atomic_write_text(
            out / HYPOTHESES_FILE,
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
        )

        save_bad_rows_tsv(out / SKIPPED_FILE, skipped)

        summary = summarize(records, skipped, self._inputs.num_inputs)
        summary["source"] = str(self._inputs.source)
        summary.update(self._settings)
        if self._scorer is not None:
            self._scorer(records, summary)
        atomic_write_text(
            out / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        )

        shutil.rmtree(out / PARTS_DIR)  # merged: the parts go

        for bad in skipped[:10]:
            log.warning("Skipped: {}", bad.describe())
        if len(skipped) > 10:
            log.warning("... and {} more skipped examples.", len(skipped) - 10)

        log.info("{}", format_summary(summary))
        log.info(
            "Hypotheses in {}, skipped examples in {}, summary in {}.",
            out / HYPOTHESES_FILE,
            out / SKIPPED_FILE,
            out / SUMMARY_FILE,
        )


def read_earlier(
    inputs: GenerateInputs, output_dir: Path
) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """What earlier runs into this directory generated and skipped: the
    part files (all ranks, any world size) and a finished run's outputs.
    A line cut off by a kill is ignored (its example is generated again).
    Rows set aside while reading the inputs are not included."""
    records, skipped = read_parts(output_dir, HYPOTHESES_FILE, SKIPPED_FILE)
    input_rows = set(inputs.bad_rows)
    return records, [b for b in skipped if b not in input_rows]
