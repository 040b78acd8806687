"""Long recordings in the generation recipes (``long_form.enabled``).

Without it, a row longer than the projector (or the LLM's context) takes is
skipped as ``too_long_audio``/``too_long_for_llm``. With it, such a row (a
whole audio file; a segment row still is skipped) goes through
:func:`~speechmapper_plugin.speech_llm.long_form.run_long_form`, the one
place that cuts, decodes and joins: its record's ``hypothesis`` is the
segments' answers joined, and ``segments`` lists each one's ``start``,
``end`` (seconds) and ``text``. Shorter rows are generated as before.

The long rows are read and decoded by ``run_long_form`` itself (streamed
chunk by chunk), one per batch, after this rank's other batches. Their
records and skips go to the generation unit's own part files
(:meth:`GenerateUnit.append`), so resuming and merging work as for other rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import torch
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.logging import log
from fairseq2.metrics import MetricBag, Sum
from fairseq2.recipe.generator import GeneratorUnit
from fairseq2.utils.validation import ValidationResult
from typing_extensions import override

from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.audio.stream import num_samples_16k
from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.data.reasons import EMPTY_AUDIO
from speechmapper_plugin.generation_task.inputs import GenerateItem
from speechmapper_plugin.generation_task.unit import (
    GenerateBatch,
    GenerateReader,
    GenerateUnit,
    OnePassReader,
    make_record,
)
from speechmapper_plugin.speech_llm import (
    PipelineResult,
    SkippedInput,
    SpeechMapperPipeline,
    SpeechTooLongError,
)
from speechmapper_plugin.speech_llm.audio_inputs import AudioInputError
from speechmapper_plugin.speech_llm.long_form import LongFormResult, run_long_form


@dataclass(kw_only=True)
class LongFormSection:
    """Rows longer than the models take, cut into segments and joined."""

    enabled: bool = False
    """Off: such rows are skipped (``too_long_audio``), as before."""

    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    """``kind: fixed`` (windows of ``max_seconds``) or ``vad`` (Silero VAD's
    speech regions merged up to ``max_seconds``); ``max_seconds`` is lowered
    to what the projector and the LLM take."""

    batch_size: int | None = None
    """Segments per forward pass; default: ``batching.max_batch_size``."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        try:
            self.segmenter.check()
        except ValueError as ex:
            result.add_error(f"`long_form.segmenter`: {ex}")
        if self.batch_size is not None and self.batch_size < 1:
            result.add_error(
                f"`long_form.batch_size` must be positive, but is {self.batch_size}."
            )
        return result


def split_long(
    items: Sequence[GenerateItem], pipeline: SpeechMapperPipeline
) -> tuple[list[GenerateItem], list[GenerateItem]]:
    """``items`` as (rows the models take whole, whole-file rows too long
    for them), each in the given order."""
    short: list[GenerateItem] = []
    long: list[GenerateItem] = []
    for item in items:
        row = item.audio
        samples = None if row is None or row.is_segment else num_samples_16k(row.audio)
        if samples is not None and _too_long(pipeline, samples, item.instruction):
            long.append(item)
        else:
            short.append(item)
    return short, long


def _too_long(pipeline: SpeechMapperPipeline, samples: int, instruction: str) -> bool:
    try:
        pipeline.check_audio(samples, instruction)
    except SpeechTooLongError:
        return True
    except AudioInputError:
        return False  # another problem: the normal path reports it
    return False


def long_form_record(item: GenerateItem, result: LongFormResult) -> dict[str, Any]:
    """The row's ``hypotheses.jsonl`` line: :func:`make_record`'s fields, the
    counts summed over the segments, and the segments with their times."""
    answered = [
        s.result for s in result.segments if isinstance(s.result, PipelineResult)
    ]
    if not answered:
        raise ValueError("A long-form record needs at least one answered segment.")
    record = make_record(item, answered[0])
    record["hypothesis"] = result.text
    stops = Counter(r.stop_reason for r in answered)
    for worst in ("repetition", "max_length"):
        if stops[worst]:
            record["stop_reason"] = worst
            break
    record["repetition_stopped"] = any(r.repetition_stopped for r in answered)
    record["max_length_reached"] = any(r.max_length_reached for r in answered)
    record["num_speech_positions"] = sum(r.num_speech_positions for r in answered)
    record["num_generated_tokens"] = sum(len(r.token_ids) for r in answered)
    record["segments"] = [
        {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
        | (
            {"skipped": s.result.error.code}
            if isinstance(s.result, SkippedInput)
            else {}
        )
        for s in result.segments
    ]
    record["num_skipped_segments"] = result.skipped
    return record


@dataclass
class LongFormBatch(SupportsDeviceTransfer):
    """One long row, read by ``run_long_form`` itself."""

    item: GenerateItem

    @override
    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        """Nothing to move: the pipeline places its inputs itself."""


AnyBatch = GenerateBatch | LongFormBatch


@final
class LongFormReader(OnePassReader[AnyBatch]):
    """The generation reader's batches, then one batch per long row."""

    def __init__(self, inner: GenerateReader, long: Sequence[GenerateItem]) -> None:
        self._inner = inner
        self._long = list(long)
        super().__init__()

    @override
    def _read(self) -> Iterator[AnyBatch]:
        for batches in self._inner:
            yield from batches
        for item in self._long:
            yield LongFormBatch(item)

    @override
    def reset(self) -> None:
        self._inner.reset()
        super().reset()


@final
class LongFormUnit(GeneratorUnit[AnyBatch]):
    """The generation unit for its batches; long rows through
    :func:`run_long_form`, appended to the unit's part files."""

    def __init__(
        self,
        inner: GenerateUnit,
        *,
        pipeline: SpeechMapperPipeline,
        section: LongFormSection,
    ) -> None:
        self._inner = inner
        self._pipeline = pipeline
        self._section = section

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._inner.prepare_metric_bag(metric_bag)
        metric_bag.add("num_long_form", Sum())

    @override
    def process_batch(self, batch: AnyBatch, metric_bag: MetricBag) -> None:
        if isinstance(batch, GenerateBatch):
            self._inner.process_batch(batch, metric_bag)
            return

        item = batch.item
        records: list[dict[str, Any]] = []
        skipped: list[BadRow] = []
        row = item.audio
        if row is None:  # split_long takes audio rows only
            raise ValueError(f"Long-form row '{item.id}' has no audio.")
        try:
            result = run_long_form(
                self._pipeline,
                row.audio,
                item.instruction,
                segmenter=self._section.segmenter,
                batch_size=self._section.batch_size,
            )
        except AudioInputError as ex:
            skipped.append(ex.problem.bad_row(item.line_no, item.id))
        else:
            skips = [
                s.result for s in result.segments if isinstance(s.result, SkippedInput)
            ]
            if len(skips) == len(result.segments):
                skipped.append(
                    skips[0].error.problem.bad_row(item.line_no, item.id)
                    if skips
                    else BadRow(
                        item.line_no,
                        item.id,
                        EMPTY_AUDIO,
                        f"{row.audio}: the segmenter ({self._section.segmenter.kind}) found no speech",
                    )
                )
            else:
                records.append(long_form_record(item, result))
                log.info(
                    "Long-form '{}': {} segments ({} skipped).",
                    item.id,
                    len(result.segments),
                    result.skipped,
                )

        self._inner.append(records, skipped)
        metric_bag.get("num_examples", Sum).update(torch.tensor(len(records)))
        metric_bag.get("num_skipped", Sum).update(torch.tensor(len(skipped)))
        metric_bag.get("num_long_form", Sum).update(torch.tensor(len(records)))

    @override
    def finalize(self, metric_bag: MetricBag) -> None:
        self._inner.finalize(metric_bag)
