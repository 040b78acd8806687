"""The data pipeline both training datasets share: shuffle, shard over
data-parallel ranks, load, bucket by length, collate, prefetch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fairseq2.data import create_bucket_sizes
from fairseq2.data.data_pipeline import read_sequence
from fairseq2.datasets import DataPipelineReader, SyncMode
from fairseq2.gang import Gangs
from torch import Tensor

from speechmapper_plugin.data.feature_store import FeatureStore

BatchT = TypeVar("BatchT")


class StoredExample(Protocol):
    """An example whose speech is an entry of one of a dataset's feature stores."""

    @property
    def store_index(self) -> int: ...

    @property
    def entry_index(self) -> int: ...

    @property
    def num_frames(self) -> int: ...


@dataclass(kw_only=True)
class SpeechReadOptions:
    max_num_frames: int = 40_000
    """Frames (after 2:1 averaging) per batch, padding included."""

    batch_size: int | None = None
    """If set, fixed-size batches instead of frame-budget batches."""

    example_shuffle_window: int = 10_000
    """0 = shuffle the whole split, 1 = no shuffling."""

    batch_shuffle_window: int = 100

    num_accumulate: int = 1

    prefetch: int = 4

    num_parallel_calls: int = 4

    drop_remainder: bool = False

    sync_batches: bool = True
    """Make every data-parallel rank read the same number of batches."""

    sync_mode: SyncMode = SyncMode.UNTIL_FIRST

    seed: int = 2


def create_speech_reader(
    examples: Sequence[StoredExample],
    stores: Sequence[FeatureStore],
    collate: Callable[[list[dict[str, Any]]], BatchT],
    gangs: Gangs,
    options: SpeechReadOptions,
) -> DataPipelineReader[BatchT]:
    """A reader over ``examples``, loading their features from ``stores``.

    Every example must be at most ``options.max_num_frames`` long (filter
    first: fairseq2 would drop longer examples silently).

    :param collate: a list of ``{"features": [T, D], "example": example}``
        dicts -> a batch.
    """

    def load(index: int) -> dict[str, Any]:
        example = examples[index]
        store = stores[example.store_index]
        return {
            "features": store.read(store.entries[example.entry_index]),
            "example": example,
        }

    num_frames = [e.num_frames for e in examples]
    longest = max(num_frames)
    if options.batch_size is None and longest > options.max_num_frames:
        raise ValueError(
            f"An example has {longest} frames, more than `max_num_frames` ({options.max_num_frames}); filter such examples before reading."
        )

    builder = read_sequence(list(range(len(num_frames))))

    if options.example_shuffle_window != 1:
        builder.shuffle(options.example_shuffle_window, seed=options.seed)

    builder.shard(gangs.dp.rank, gangs.dp.size, allow_uneven=True)

    builder.map(load, num_parallel_calls=options.num_parallel_calls)

    if options.batch_size is not None:
        builder.bucket(options.batch_size, drop_remainder=options.drop_remainder)
    else:
        # fairseq2 wants the budget to be a multiple of the longest example.
        bucket_sizes = create_bucket_sizes(
            max_num_elements=(options.max_num_frames // longest) * longest,
            max_seq_len=longest,
        )
        builder.bucket_by_length(
            bucket_sizes, selector="features", drop_remainder=options.drop_remainder
        )

    if options.batch_shuffle_window != 1:
        builder.shuffle(options.batch_shuffle_window, seed=options.seed + 1)

    builder.map(collate)

    builder.prefetch(options.prefetch)

    return DataPipelineReader[BatchT](
        builder.and_return(),
        gangs,
        num_accumulate=options.num_accumulate,
        drop_remainder=options.drop_remainder,
        sync=options.sync_batches,
        sync_mode=options.sync_mode,
    )


ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class RowSelection:
    """The rows of a batch where a ``[B]`` bool mask is true (see :func:`select_rows`)."""

    index: Tensor
    rows: list[int]

    def pick(self, values: Sequence[ItemT]) -> list[ItemT]:
        return [values[i] for i in self.rows]

    def padded(self, seqs: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """The kept rows of right-padded ``seqs``, cut to the longest of them,
        and their lengths."""
        kept = lens[self.index]
        width = int(kept.max()) if self.rows else 0
        return seqs[self.index, :width], kept


def select_rows(mask: Tensor) -> RowSelection:
    """For the ``select`` of the datasets' batches (dropping non-finite rows)."""
    index = mask.nonzero().flatten()
    return RowSelection(index, index.tolist())
