"""The generate recipe's task: this rank's share of the examples -> hypotheses.

Examples are sorted by length (longest first) and dealt round-robin to the
data-parallel ranks, so ranks get similar amounts of work and batches hold
similar lengths. Each rank writes its own part file; after a barrier, rank 0
merges the parts in input order into ``hypotheses.jsonl``, lists every skipped
example in ``skipped.tsv`` and writes ``summary.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import torch
from fairseq2.gang import Gangs
from fairseq2.logging import log
from fairseq2.task import Task, TaskStopException
from fairseq2.utils.progress import ProgressReporter, ProgressTask
from torch import Tensor
from typing_extensions import override

from recipes.generate.config import BatchingSection
from recipes.generate.inputs import GenerateInputs, GenerateItem
from recipes.generate.summary import format_summary, summarize
from speechmapper_plugin.data.bad_rows_tsv import read_bad_rows_tsv, write_bad_rows_tsv
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.data.reasons import NON_FINITE_FEATURES, TOO_SHORT_AUDIO
from speechmapper_plugin.data.waveform_reader import (
    WaveformBatch,
    WaveformReadOptions,
    create_waveform_reader,
)
from speechmapper_plugin.speech_llm import (
    PipelineResult,
    SpeechMapperPipeline,
    SpeechTooLongError,
    SpeechTooShortError,
)

TOO_LONG_AUDIO = "too_long_audio"
"""The audio is longer than the projector or the LLM's context can take."""

MISSING_FEATURES = "missing_features"
"""A ``speech`` id that the feature store does not hold."""

HYPOTHESES_FILE = "hypotheses.jsonl"
SKIPPED_FILE = "skipped.tsv"
SUMMARY_FILE = "summary.json"
PARTS_DIR = "hypotheses.parts"

PROGRESS_LOG_INTERVAL_S = 60.0
"""Log this rank's progress at most this often (the progress bar is off in
batch jobs)."""


def assign(
    items: Sequence[GenerateItem], rank: int, world_size: int
) -> list[GenerateItem]:
    """This rank's examples: longest first, dealt round-robin."""
    ordered = sorted(items, key=lambda item: -item.length_hint())
    return ordered[rank::world_size]


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
    record["hypothesis"] = result.text
    if item.reference is not None:
        record["reference"] = item.reference
    record["stop_reason"] = result.stop_reason
    record["repetition_stopped"] = result.repetition_stopped
    record["max_length_reached"] = result.max_length_reached
    record["num_speech_positions"] = result.num_speech_positions
    record["num_generated_tokens"] = len(result.token_ids)
    return record


class GenerateTask(Task):
    """Generates this rank's examples; SIGUSR1 stops it between batches."""

    def __init__(
        self,
        *,
        pipeline: SpeechMapperPipeline,
        inputs: GenerateInputs,
        feature_store: FeatureStore | None,
        gangs: Gangs,
        output_dir: Path,
        batching: BatchingSection,
        progress_reporter: ProgressReporter,
    ) -> None:
        self._pipeline = pipeline
        self._inputs = inputs
        self._store = feature_store
        self._gangs = gangs
        self._output_dir = output_dir
        self._batching = batching
        self._progress_reporter = progress_reporter
        self._stop_requested = False
        self._num_batches = 0
        self._num_generated = 0
        self._num_done = 0
        self._num_mine = 0
        self._start = time.monotonic()
        self._last_log = self._start

    @override
    def run(self) -> None:
        gang = self._gangs.root

        mine = assign(self._inputs.items, gang.rank, gang.size)
        self._num_mine = len(mine)

        log.info(
            "Rank {}: {} of {} examples to generate.",
            gang.rank,
            len(mine),
            len(self._inputs.items),
        )

        parts = self._output_dir / PARTS_DIR
        parts.mkdir(parents=True, exist_ok=True)

        skipped: list[BadRow] = []

        with (
            _part_file(parts, gang.rank).open("w", encoding="utf-8") as out,
            self._progress_reporter.create_task(
                "generate", total=len(mine)
            ) as progress,
        ):
            self._generate_audio(
                [i for i in mine if i.audio is not None], out, skipped, progress
            )
            self._generate_features(
                [i for i in mine if i.speech is not None], out, skipped, progress
            )

        with _skipped_part_file(parts, gang.rank).open("w", encoding="utf-8") as fp:
            write_bad_rows_tsv(fp, skipped)

        log.info(
            "Rank {}: generated {}, skipped {}.",
            gang.rank,
            self._num_generated,
            len(skipped),
        )

        gang.barrier()

        if gang.rank == 0:
            self._merge(parts, gang.size)

    def _generate_audio(
        self,
        items: list[GenerateItem],
        out: IO[str],
        skipped: list[BadRow],
        progress: ProgressTask,
    ) -> None:
        if not items:
            return

        batching = self._batching

        reader = create_waveform_reader(
            [item.audio for item in items if item.audio is not None],
            self._gangs,
            min_num_samples=self._pipeline.min_num_samples,
            options=WaveformReadOptions(
                max_num_samples=batching.max_num_samples,
                max_batch_size=batching.max_batch_size,
                num_parallel_decodes=batching.num_parallel_decodes,
                prefetch=batching.prefetch,
            ),
        )

        for batches in reader:
            for batch in batches:
                self._check_stop()
                self._generate_waveform_batch(items, batch, out, skipped)
                self._step(progress, batch.num_rows, skipped)

    def _generate_waveform_batch(
        self,
        items: list[GenerateItem],
        batch: WaveformBatch,
        out: IO[str],
        skipped: list[BadRow],
    ) -> None:
        skipped.extend(batch.skipped)

        ready: list[GenerateItem] = []
        waveforms = []
        for position, audio in zip(batch.audio_positions, batch.audio, strict=True):
            item = items[position]
            try:
                self._pipeline.check_audio(
                    audio.waveform.numel(), item.instruction, where=item.id
                )
            except (SpeechTooShortError, SpeechTooLongError) as ex:
                skipped.append(_length_bad_row(item, ex))
                continue
            ready.append(item)
            waveforms.append(audio.waveform)

        if ready:
            results = self._pipeline.run_waveforms(
                waveforms,
                [item.instruction for item in ready],
                names=[item.id for item in ready],
            )
            self._write(ready, results, out)

        self._num_batches += 1

    def _generate_features(
        self,
        items: list[GenerateItem],
        out: IO[str],
        skipped: list[BadRow],
        progress: ProgressTask,
    ) -> None:
        if not items:
            return

        store = self._store
        if store is None:
            raise ValueError(
                "Examples with `speech` ids need `input.feature_store`."
            )  # the recipe checks this before loading models

        found = []
        for item in items:
            if item.speech is None or item.speech not in store:
                skipped.append(
                    BadRow(
                        item.line_no,
                        item.id,
                        MISSING_FEATURES,
                        f"the feature store {store.path} has no utterance '{item.speech}'",
                    )
                )
                self._step(progress, 1, skipped)
            else:
                found.append((item, store.entry(item.speech)))

        found.sort(key=lambda pair: -pair[1].num_frames)

        size = self._batching.max_batch_size
        for start in range(0, len(found), size):
            self._check_stop()

            chunk = found[start : start + size]

            ready, features = [], []
            for item, entry in chunk:
                seq = store.read(entry)
                bad = self._feature_problem(item, seq)
                if bad is not None:
                    skipped.append(bad)
                    continue
                ready.append(item)
                features.append(seq)

            if ready:
                results = self._pipeline.run_features(
                    features,
                    [item.instruction for item in ready],
                    pre_averaged=True,
                    names=[item.id for item in ready],
                )
                self._write(ready, results, out)

            self._num_batches += 1
            self._step(progress, len(chunk), skipped)

    def _feature_problem(self, item: GenerateItem, features: Tensor) -> BadRow | None:
        if not bool(torch.isfinite(features).all()):
            return BadRow(
                item.line_no,
                item.id,
                NON_FINITE_FEATURES,
                "the stored features hold NaN/inf",
            )

        try:
            self._pipeline.check_features(
                features.size(0), item.instruction, pre_averaged=True, where=item.id
            )
        except (SpeechTooShortError, SpeechTooLongError) as ex:
            return _length_bad_row(item, ex)

        return None

    def _write(
        self, items: list[GenerateItem], results: list[PipelineResult], out: IO[str]
    ) -> None:
        for item, result in zip(items, results, strict=True):
            out.write(json.dumps(make_record(item, result), ensure_ascii=False) + "\n")
        out.flush()
        self._num_generated += len(items)

    def _merge(self, parts: Path, world_size: int) -> None:
        records: list[dict[str, Any]] = []
        skipped = list(self._inputs.bad_rows)

        for rank in range(world_size):
            with _part_file(parts, rank).open(encoding="utf-8") as fp:
                records.extend(json.loads(line) for line in fp if line.strip())
            with _skipped_part_file(parts, rank).open(encoding="utf-8") as fp:
                skipped.extend(read_bad_rows_tsv(fp))

        order = {item.id: i for i, item in enumerate(self._inputs.items)}
        records.sort(key=lambda r: order[r["id"]])
        skipped.sort(key=lambda b: (b.line_no, b.id or ""))

        out = self._output_dir
        _write_text(
            out / HYPOTHESES_FILE,
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
        )

        with (out / SKIPPED_FILE).open("w", encoding="utf-8") as fp:
            write_bad_rows_tsv(fp, skipped)

        summary = summarize(records, skipped, self._inputs.num_inputs)
        summary["source"] = str(self._inputs.source)
        _write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")

        shutil.rmtree(parts)

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

    def _step(self, progress: ProgressTask, count: int, skipped: list[BadRow]) -> None:
        progress.step(count)

        self._num_done += count

        now = time.monotonic()
        if now - self._last_log < PROGRESS_LOG_INTERVAL_S:
            return
        self._last_log = now

        log.info(
            "Rank {}: {}/{} examples done ({} generated, {} skipped), {:.1f} examples/s.",
            self._gangs.root.rank,
            self._num_done,
            self._num_mine,
            self._num_generated,
            len(skipped),
            self._num_done / max(now - self._start, 1e-9),
        )

    def _check_stop(self) -> None:
        if self._stop_requested:
            raise TaskStopException()

    @override
    def request_stop(self) -> None:
        self._stop_requested = True

    @property
    @override
    def step_nr(self) -> int:
        return self._num_batches

    @override
    def close(self) -> None:
        pass


def _length_bad_row(
    item: GenerateItem, ex: SpeechTooShortError | SpeechTooLongError
) -> BadRow:
    reason = TOO_SHORT_AUDIO if isinstance(ex, SpeechTooShortError) else TOO_LONG_AUDIO
    return BadRow(item.line_no, item.id, reason, ex.reason)


def _part_file(parts: Path, rank: int) -> Path:
    return parts / f"rank_{rank:03d}.jsonl"


def _skipped_part_file(parts: Path, rank: int) -> Path:
    return parts / f"skipped_rank_{rank:03d}.tsv"


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
