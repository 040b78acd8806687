"""Extracting speech-encoder features of a manifest into a feature store.

Each process (rank ``r`` of ``W``) extracts the shards ``k ≡ r (mod W)`` that
are not finished yet, writing each atomically; the rank that finishes last
merges the index.
A rerun — after a kill, a crash, or with another world size — skips every
finished shard, because the shards are fixed slices of the manifest.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fairseq2.gang import Gangs
from fairseq2.logging import log
from fairseq2.utils.progress import NOOP_PROGRESS_REPORTER, ProgressReporter
from torch import Tensor

from speechmapper_plugin.audio import SAMPLE_RATE
from speechmapper_plugin.data.feature_store import (
    FeatureStoreError,
    FeatureStoreMetadata,
    ShardPlan,
    ShardWriter,
    StoreSummary,
    create_or_check_store,
    discard_unfinished,
    finished_shard_record,
    merge_index,
    plan_shards,
    read_metadata,
    shards_of_rank,
)
from speechmapper_plugin.data.feature_store.checksums import sha256_file
from speechmapper_plugin.data.feature_store.layout import shard_record_file
from speechmapper_plugin.data.feature_store.writer import check_same_identity
from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.reasons import NON_FINITE_FEATURES
from speechmapper_plugin.data.row_checks import check_transcript
from speechmapper_plugin.datasets.audio_manifest import ManifestSplit
from speechmapper_plugin.datasets.waveform_reader import (
    WaveformBatch,
    WaveformReadOptions,
    create_waveform_reader,
)
from speechmapper_plugin.input_checks import is_finite
from speechmapper_plugin.models.sfm import SfmExtractor as SfmExtractor


def build_store_metadata(
    split: ManifestSplit,
    extractor: SfmExtractor,
    *,
    encoder: str,
    dtype: str,
    rows_per_shard: int,
    created_by: str = "",
    config: dict[str, Any] | None = None,
) -> FeatureStoreMetadata:
    """The metadata of a store of ``extractor``'s features of ``split``.

    :param encoder: The encoder's card name (or checkpoint path), for the
        record; the family (``sm4t_speech_encoder`` or ``whisper_encoder``),
        layer and LayerNorm choice are recorded next to it.
    """
    return FeatureStoreMetadata(
        dim=extractor.model.model_dim,
        dtype=dtype,
        frame_averaging=extractor.frame_averaging,
        frame_rate=extractor.frame_rate,
        sample_rate=SAMPLE_RATE,
        encoder=encoder,
        encoder_family=extractor.family,
        layer=extractor.layer,
        layer_norm=extractor.layer_norm,
        manifest=str(split.manifest.path.resolve()),
        manifest_sha256=sha256_file(split.manifest.path),
        audio_root=str(split.manifest.root),
        split=split.split,
        rows_per_shard=rows_per_shard,
        num_shards=len(plan_shards(len(split.rows), rows_per_shard)),
        num_rows=len(split.rows),
        created_by=created_by,
        config=config or {},
    )


class ExtractionStopped(Exception):
    """Raised when a stop was requested; finished shards stay finished."""


@dataclass
class RankReport:
    """What one rank did."""

    rank: int
    num_assigned_shards: int = 0
    finished_before: list[int] = field(default_factory=list)
    """Shards found finished and skipped."""

    extracted: list[int] = field(default_factory=list)
    """Shards extracted by this run."""

    num_stored: int = 0
    num_skipped: int = 0
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0


class FeatureExtraction:
    """Extracts this rank's unfinished shards; the last rank to finish merges the index.

    :param rows: The manifest rows to store (unique ids), in manifest order;
        shard ``k`` is ``rows[k * rows_per_shard : (k + 1) * rows_per_shard]``.
    :param manifest_bad_rows: Rows set aside before extraction (malformed,
        duplicate ids); they are listed in the store's ``errors.tsv``.
    :param metadata: The store's metadata (``num_rows``, ``num_shards`` and
        ``rows_per_shard`` must agree with ``rows``).
    :param extractor: Waveforms -> padded features and lengths; rows shorter
        than its ``min_num_samples`` are skipped.
    :param sort_by_length: Within a shard, batch rows longest first when the
        manifest declares lengths: less padding, and memory peaks early.
    """

    def __init__(
        self,
        *,
        store: Path,
        rows: Sequence[ManifestRow],
        manifest_bad_rows: Sequence[BadRow],
        metadata: FeatureStoreMetadata,
        extractor: SfmExtractor,
        gangs: Gangs,
        read_options: WaveformReadOptions | None = None,
        sort_by_length: bool = True,
        verify_finished_shards: bool = False,
        progress_reporter: ProgressReporter = NOOP_PROGRESS_REPORTER,
    ) -> None:
        if metadata.num_rows != len(rows):
            raise ValueError(
                f"`metadata.num_rows` is {metadata.num_rows}, but {len(rows)} rows are given."
            )

        self._store = store
        self._rows = rows
        self._manifest_bad_rows = list(manifest_bad_rows)
        self._metadata = metadata
        self._extractor = extractor
        self._gangs = gangs
        self._read_options = read_options or WaveformReadOptions()
        self._sort_by_length = sort_by_length
        self._verify_finished_shards = verify_finished_shards
        self._progress_reporter = progress_reporter
        self._dtype = metadata.torch_dtype
        self._stop_requested = False
        self._last_finish = 0.0
        self.num_batches = 0

    def request_stop(self) -> None:
        self._stop_requested = True

    def run(self) -> tuple[RankReport, StoreSummary | None]:
        """:returns: This rank's report, and the store summary if this rank
        merged the index (the last rank to finish does)."""
        gang = self._gangs.root
        start = time.monotonic()

        self._prepare_store()

        report = RankReport(rank=gang.rank)

        plans = plan_shards(len(self._rows), self._metadata.rows_per_shard)
        mine = shards_of_rank(plans, gang.rank, gang.size)
        report.num_assigned_shards = len(mine)

        pending: list[ShardPlan] = []
        for plan in mine:
            record = finished_shard_record(
                self._store, plan, verify_checksum=self._verify_finished_shards
            )
            if record is None:
                discard_unfinished(self._store, plan)
                pending.append(plan)
            else:
                report.finished_before.append(plan.index)

        log.info(
            "Rank {}: {} of {} shards assigned; {} already finished (skipped), {} to extract ({} rows).",
            gang.rank,
            len(mine),
            len(plans),
            len(report.finished_before),
            len(pending),
            sum(p.num_rows for p in pending),
        )

        self._extract(pending, report)

        report.elapsed_seconds = time.monotonic() - start

        log.info(
            "Rank {}: extracted {} shards: {} utterances stored, {} skipped, {} of audio in {}.",
            gang.rank,
            len(report.extracted),
            report.num_stored,
            report.num_skipped,
            format_duration(report.audio_seconds),
            format_duration(report.elapsed_seconds),
        )

        # No end-of-run barrier: ranks with less work would wait for the slowest
        # one and could hit the gang timeout on a large, uneven run. Instead,
        # every rank checks after writing its last record, so the rank that
        # finishes last sees every record and merges the index.
        unfinished = [
            p.index
            for p in plans
            if not shard_record_file(self._store, p.index).exists()
        ]
        if unfinished:
            log.info(
                "Rank {}: done; {} shards are still being extracted by other ranks (e.g. {}). The last rank to finish merges the index (or run `python -m speechmapper_plugin.data.feature_store.rebuild_index {}`).",
                gang.rank,
                len(unfinished),
                unfinished[0],
                self._store,
            )
            return report, None

        summary = merge_index(self._store)

        log.info(
            "Rank {}: feature store {} complete: {} utterances, {} skipped ({}), {} of audio, {:.1f} MiB ({:.0f} MiB per hour of audio).",
            gang.rank,
            self._store,
            summary.num_entries,
            summary.num_skipped,
            ", ".join(f"{r}: {n}" for r, n in sorted(summary.skipped_by_reason.items()))
            or "none",
            format_duration(summary.audio_seconds),
            (summary.feature_bytes + summary.index_bytes) / 2**20,
            summary.bytes_per_audio_hour / 2**20,
        )

        if summary.num_entries == 0:
            reasons = ", ".join(
                f"{r}: {n}" for r, n in sorted(summary.skipped_by_reason.items())
            )
            raise FeatureStoreError(
                f"No utterance of the manifest could be extracted: all {summary.num_skipped} rows were skipped ({reasons or 'the manifest is empty'}). See {self._store / 'errors.tsv'}, or validate the manifest with `python -m speechmapper_plugin.data.validate_manifest`."
            )

        return report, summary

    def _prepare_store(self) -> None:
        """Rank 0 creates the store (or checks a resumed one); every rank then
        raises the same error, so no rank waits for a failed one."""
        gang = self._gangs.root

        message: list[object] = [None]
        if gang.rank == 0:
            try:
                resumed = create_or_check_store(
                    self._store, self._metadata, self._manifest_bad_rows
                )
                if resumed:
                    log.info("Resuming the feature store {}.", self._store)
            except (FeatureStoreError, OSError) as ex:
                message = [f"{type(ex).__name__}: {ex}"]

        if gang.size > 1:
            gang.broadcast_objects(message, source_rank=0)

        if message[0] is not None:
            raise FeatureStoreError(str(message[0]))

        if gang.rank != 0:
            check_same_identity(read_metadata(self._store), self._metadata, self._store)

    def _extract(self, pending: list[ShardPlan], report: RankReport) -> None:
        if not pending:
            return

        writers = {
            plan.index: ShardWriter(
                self._store, plan, dim=self._metadata.dim, dtype=self._dtype
            )
            for plan in pending
        }

        # Rows to decode, as (global position) in processing order.
        positions: list[int] = []
        shard_starts: list[int] = []
        for plan in pending:
            shard_starts.append(len(positions))
            shard_positions = []
            for position in range(plan.start, plan.stop):
                bad = check_transcript(self._rows[position])
                if bad is not None:
                    writers[plan.index].skip(position, bad)
                else:
                    shard_positions.append(position)
            if self._sort_by_length:
                shard_positions.sort(key=lambda p: -_declared_seconds(self._rows[p]))
            positions.extend(shard_positions)

        shard_of = {p: p // self._metadata.rows_per_shard for p in positions}

        reader = create_waveform_reader(
            [self._rows[p] for p in positions],
            self._gangs,
            min_num_samples=self._extractor.min_num_samples,
            options=self._read_options,
            batch_starts=shard_starts,
        )

        self._last_finish = time.monotonic()

        self._finish_done(writers, report, len(pending))

        with self._progress_reporter.create_task(
            "extract", total=len(positions)
        ) as progress:
            for batches in reader:
                for batch in batches:
                    if self._stop_requested:
                        raise ExtractionStopped()

                    self._process(batch, positions, shard_of, writers, report)

                    self.num_batches += 1

                    progress.step(batch.num_rows)

                self._finish_done(writers, report, len(pending))

        if writers:
            raise RuntimeError(
                f"Shards {sorted(writers)} still have rows pending after the last batch."
            )

    def _process(
        self,
        batch: WaveformBatch,
        positions: list[int],
        shard_of: dict[int, int],
        writers: dict[int, ShardWriter],
        report: RankReport,
    ) -> None:
        for local, bad in zip(batch.skipped_positions, batch.skipped, strict=True):
            position = positions[local]
            writers[shard_of[position]].skip(position, bad)

        if not batch.audio:
            return

        features, lengths = self._extractor([a.waveform for a in batch.audio])

        stored = features.to(device="cpu", dtype=self._dtype)

        for i, (local, audio) in enumerate(
            zip(batch.audio_positions, batch.audio, strict=True)
        ):
            position = positions[local]
            writer = writers[shard_of[position]]
            row = audio.row

            length = int(lengths[i])

            row_features = stored[i, :length].clone()

            if not is_finite(row_features):
                bad = BadRow(
                    row.line_no,
                    row.id,
                    NON_FINITE_FEATURES,
                    self._explain(features[i, :length]),
                )
                writer.skip(position, bad)
                continue

            writer.add(position, row, row_features, audio.waveform.numel())

    def _explain(self, raw: Tensor) -> str:
        """Why a row's stored features are not finite."""
        if not is_finite(raw):
            return "the encoder output holds NaN/inf values"
        limit = torch.finfo(self._dtype).max
        return f"the features exceed the range of {self._metadata.dtype} (max {limit:g}; largest value {float(raw.abs().max()):g}); store as bfloat16"

    def _finish_done(
        self, writers: dict[int, ShardWriter], report: RankReport, num_pending: int
    ) -> None:
        for index in [i for i, w in writers.items() if w.done]:
            now = time.monotonic()
            record = writers.pop(index).finish(
                extraction_seconds=now - self._last_finish
            )
            self._last_finish = now

            report.extracted.append(index)
            report.num_stored += len(record.entries)
            report.num_skipped += len(record.skipped)
            report.audio_seconds += record.audio_seconds

            speed = record.audio_seconds / max(record.extraction_seconds, 1e-9)
            log.info(
                "Rank {}: shard {} finished ({}/{} of this run): {} stored, {} skipped, {} of audio at {} real time.",
                self._gangs.root.rank,
                index,
                len(report.extracted),
                num_pending,
                len(record.entries),
                len(record.skipped),
                format_duration(record.audio_seconds),
                format_speed(speed),
            )


def format_speed(speed: float) -> str:
    """``12x``, or two significant digits below 10x: a full-size encoder on a
    CPU runs at about 0.4x, which a whole-number format printed as ``0x``."""
    return f"{speed:.0f}x" if speed >= 10 else f"{speed:.2g}x"


def format_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _declared_seconds(row: ManifestRow) -> float:
    if row.duration is not None:
        return row.duration
    if row.num_samples is not None:
        return row.num_samples / 16_000
    return 0.0
