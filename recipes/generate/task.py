"""The generate recipe's task: this rank's share of the examples -> hypotheses.

Examples are sorted by length (longest first) and dealt round-robin to the
data-parallel ranks, so ranks get similar amounts of work and batches hold
similar lengths. Each rank appends to its own part files (hypotheses and
skipped examples), flushed after every batch; after a barrier, rank 0 merges
the parts in input order into ``hypotheses.jsonl``, lists every skipped
example in ``skipped.tsv`` and writes ``summary.json``.

**Resuming.** A run into an output directory that already holds part files
(an interrupted run) or ``hypotheses.jsonl`` (a finished one) generates only
the examples none of them has; the merged result equals an uninterrupted
run's. The recipe refuses to resume with settings that change hypotheses
(``generation_settings.json``).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterable, Sequence
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
SETTINGS_FILE = "generation_settings.json"

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
        settings: dict[str, Any] | None = None,
    ) -> None:
        """
        :param settings: What produced the hypotheses (models, prompts,
            generation); written into the summary.
        """
        self._pipeline = pipeline
        self._inputs = inputs
        self._store = feature_store
        self._gangs = gangs
        self._output_dir = output_dir
        self._batching = batching
        self._progress_reporter = progress_reporter
        self._settings = settings
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

        parts = self._output_dir / PARTS_DIR
        parts.mkdir(parents=True, exist_ok=True)

        earlier_records, earlier_skipped = self._read_earlier(parts)
        done = {str(r["id"]) for r in earlier_records}
        done.update(b.id for b in earlier_skipped if b.id is not None)

        # Every rank has read what is done before any rank appends to its part.
        gang.barrier()

        todo = [item for item in self._inputs.items if item.id not in done]
        if done:
            log.info(
                "Rank {}: resuming; {} of {} examples are done already.",
                gang.rank,
                len(self._inputs.items) - len(todo),
                len(self._inputs.items),
            )

        mine = assign(todo, gang.rank, gang.size)
        self._num_mine = len(mine)

        log.info(
            "Rank {}: {} of {} examples to generate.",
            gang.rank,
            len(mine),
            len(self._inputs.items),
        )

        skipped = _SkippedPart(_skipped_part_file(parts, gang.rank))

        with (
            _open_for_append(_part_file(parts, gang.rank)) as out,
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

        log.info(
            "Rank {}: generated {}, skipped {}.",
            gang.rank,
            self._num_generated,
            len(skipped),
        )

        gang.barrier()

        if gang.rank == 0:
            self._merge(parts)

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

    def _read_earlier(self, parts: Path) -> tuple[list[dict[str, Any]], list[BadRow]]:
        """What earlier runs into this directory generated and skipped: the
        part files (all ranks, any world size) and a finished run's outputs.
        A line cut off by a kill is ignored (its example is generated again).
        Rows set aside while reading the inputs are not included."""
        out = self._output_dir
        records = _read_records(
            [out / HYPOTHESES_FILE, *sorted(parts.glob("rank_*.jsonl"))]
        )
        input_rows = set(self._inputs.bad_rows)
        skipped = [
            b
            for b in _read_skipped(
                [out / SKIPPED_FILE, *sorted(parts.glob("skipped_rank_*.tsv"))]
            )
            if b not in input_rows
        ]
        return records, skipped

    def _merge(self, parts: Path) -> None:
        order = {item.id: i for i, item in enumerate(self._inputs.items)}

        found, found_skipped = self._read_earlier(parts)

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
        _write_text(
            out / HYPOTHESES_FILE,
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
        )

        with (out / SKIPPED_FILE).open("w", encoding="utf-8") as fp:
            write_bad_rows_tsv(fp, skipped)

        summary = self._summarize(records, skipped)
        _write_text(
            out / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        )

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

    def _summarize(
        self, records: list[dict[str, Any]], skipped: list[BadRow]
    ) -> dict[str, Any]:
        """``summary.json``; subclasses add their scores (``recipes.evaluate``)."""
        summary = summarize(records, skipped, self._inputs.num_inputs)
        summary["source"] = str(self._inputs.source)
        if self._settings is not None:
            summary.update(self._settings)
        return summary

    def _step(self, progress: ProgressTask, count: int, skipped: list[BadRow]) -> None:
        if isinstance(skipped, _SkippedPart):
            skipped.flush()

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


class _SkippedPart(list[BadRow]):
    """This rank's skipped examples; :meth:`flush` appends the new ones to
    its part file (with a header when the file is new)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._written = 0
        _cut_partial_line(path)

    def flush(self) -> None:
        new = self[self._written :]
        if not new and self._path.exists():
            return
        with self._path.open("a", encoding="utf-8") as fp:
            if fp.tell() == 0:
                write_bad_rows_tsv(fp, new)
            else:
                _write_bad_rows(fp, new)
        self._written = len(self)


def _write_bad_rows(fp: IO[str], rows: Iterable[BadRow]) -> None:
    """Rows without the header, in ``write_bad_rows_tsv``'s layout."""
    buffer = io.StringIO()
    write_bad_rows_tsv(buffer, rows)
    fp.write(buffer.getvalue().split("\n", 1)[1])


def _cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline (a write cut off by a kill)."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as fp:
            fp.truncate(end)


def _open_for_append(path: Path) -> IO[str]:
    _cut_partial_line(path)
    return path.open("a", encoding="utf-8")


def _complete_lines(path: Path) -> list[str]:
    """The newline-terminated lines of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1]


def _read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in paths
        for line in _complete_lines(path)
        if line.strip()
    ]


def _read_skipped(paths: Iterable[Path]) -> list[BadRow]:
    rows: list[BadRow] = []
    for path in paths:
        lines = _complete_lines(path)
        if lines:
            rows.extend(read_bad_rows_tsv(io.StringIO("\n".join(lines) + "\n")))
    return rows


def _part_file(parts: Path, rank: int) -> Path:
    return parts / f"rank_{rank:03d}.jsonl"


def _skipped_part_file(parts: Path, rank: int) -> Path:
    return parts / f"skipped_rank_{rank:03d}.tsv"


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
