"""A fairseq2 reader of decoded waveform batches, for feature extraction.

Rows are decoded in parallel, grouped into batches by their total number of
samples, and prefetched while the encoder runs. A row that cannot be used
travels in its batch as a :class:`BadRow` instead of raising, so one corrupt
file never stops an extraction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from fairseq2.data.data_pipeline import read_sequence
from fairseq2.datasets import DataPipelineReader
from fairseq2.gang import Gangs

from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.row_audio import RowAudio, load_row_audio


@dataclass(kw_only=True)
class WaveformReadOptions:
    max_num_samples: int = 16_000 * 240
    """Batch budget in 16 kHz samples (240 s of audio): a batch closes as soon
    as its audio reaches it, so it exceeds it by less than one utterance."""

    max_batch_size: int = 128
    """At most this many utterances per batch."""

    num_parallel_decodes: int = 4
    """Rows decoded and resampled concurrently."""

    prefetch: int = 2
    """Batches prepared ahead of the encoder."""


@dataclass
class WaveformBatch:
    """Decoded rows (``audio``) and unusable rows (``skipped``) of a batch.

    ``positions`` of both refer to the sequence of rows the reader was made for.
    """

    audio_positions: list[int] = field(default_factory=list)
    audio: list[RowAudio] = field(default_factory=list)
    skipped_positions: list[int] = field(default_factory=list)
    skipped: list[BadRow] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.audio) + len(self.skipped)

    @property
    def num_samples(self) -> int:
        return sum(a.waveform.numel() for a in self.audio)


def create_waveform_reader(
    rows: Sequence[ManifestRow],
    gangs: Gangs,
    *,
    min_num_samples: int,
    options: WaveformReadOptions | None = None,
    batch_starts: Collection[int] = (),
) -> DataPipelineReader[WaveformBatch]:
    """Batches of ``rows``, in order (every row appears exactly once).

    The caller decides which rows this process reads (the extraction gives each
    rank its own shards), so the reader does not synchronise ranks.

    :param min_num_samples: Shorter audio (at 16 kHz) is skipped as too short.
    :param batch_starts: Positions in ``rows`` that must open a new batch. The
        extraction starts one at every shard, so a shard's batches, and hence
        its bytes, do not depend on which other shards a process extracts.
    """
    if options is None:
        options = WaveformReadOptions()

    budget = float(options.max_num_samples)

    # A boundary marker weighs the whole budget: it closes the batch it ends.
    starts = set(batch_starts)
    items: list[int] = []
    for position in range(len(rows)):
        if position in starts and position > 0:
            items.append(_BOUNDARY)
        items.append(position)

    builder = read_sequence(items)

    def load(position: int) -> tuple[int, RowAudio | BadRow | None]:
        if position == _BOUNDARY:
            return position, None
        return position, load_row_audio(rows[position], min_num_samples=min_num_samples)

    builder.map(load, num_parallel_calls=max(1, options.num_parallel_decodes))

    def cost(example: tuple[int, RowAudio | BadRow | None]) -> float:
        position, outcome = example
        if position == _BOUNDARY:
            return budget
        return float(outcome.waveform.numel()) if isinstance(outcome, RowAudio) else 0.0

    builder.dynamic_bucket(budget, cost, max_num_examples=options.max_batch_size)

    def to_batch(
        bucket: Sequence[tuple[int, RowAudio | BadRow | None]],
    ) -> WaveformBatch:
        batch = WaveformBatch()
        for position, outcome in bucket:
            if isinstance(outcome, RowAudio):
                batch.audio_positions.append(position)
                batch.audio.append(outcome)
            elif isinstance(outcome, BadRow):
                batch.skipped_positions.append(position)
                batch.skipped.append(outcome)
        return batch

    builder.map(to_batch)

    builder.filter(lambda batch: batch.num_rows > 0)

    builder.prefetch(options.prefetch)

    return DataPipelineReader[WaveformBatch](builder.and_return(), gangs, sync=False)


_BOUNDARY = -1
