"""What both training datasets share: their splits, the batch skeleton
(padded features and transcript target ids, moved and row-selected alike) and
the data pipeline (shuffle, shard over data-parallel ranks, load, bucket by
length, collate, prefetch)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from fairseq2.data import create_bucket_sizes
from fairseq2.data.data_pipeline import read_sequence
from fairseq2.datasets import DataPipelineReader, SyncMode
from fairseq2.device import Device, SupportsDeviceTransfer
from fairseq2.gang import Gangs
from torch import Tensor
from typing_extensions import Self

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


class Splits:
    """Split name -> the files a dataset reads for it, with the errors both
    training datasets give for an unknown or empty split."""

    def __init__(self, splits: Mapping[str, Sequence[Path]], what: str) -> None:
        self._paths = {k: [Path(p) for p in v] for k, v in splits.items()}
        self._what = what

    @property
    def names(self) -> set[str]:
        return set(self._paths)

    def __getitem__(self, split: str) -> list[Path]:
        if split not in self._paths:
            raise ValueError(
                f"Split '{split}' is not in the dataset; known splits: {sorted(self._paths)}."
            )
        paths = self._paths[split]
        if not paths:
            raise ValueError(f"Split '{split}' lists no {self._what}.")
        return paths


_PADDED: Final = {"features": "feature_lens", "target_ids": "target_lens"}
"""The padded tensors of a :class:`SpeechBatch` and their lengths."""


@dataclass(kw_only=True)
class SpeechBatch(SupportsDeviceTransfer):
    """What both training batches hold: speech features and the transcripts'
    MSE target ids, padded, per example; subclasses add per-example lists."""

    features: Tensor
    """``[B, T, D]`` pre-averaged SFM features (stored dtype), right-padded
    with zeros."""

    feature_lens: Tensor
    """``[B]`` valid frames per row."""

    target_ids: Tensor
    """``[B, S]`` transcript token ids, right-padded with 0."""

    target_lens: Tensor
    """``[B]`` tokens per row; 0 for an example without an MSE term."""

    ids: list[str]

    def to(self, device: Device, *, non_blocking: bool = False) -> None:
        for seqs, lens in _PADDED.items():
            for name in (seqs, lens):
                tensor = getattr(self, name)
                setattr(self, name, tensor.to(device, non_blocking=non_blocking))

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    def select(self, rows: Tensor) -> Self:
        """The sub-batch of the rows where ``rows`` (a ``[B]`` bool mask) is
        true (dropping non-finite rows); padded tensors are cut to the
        longest kept row."""
        index = rows.nonzero().flatten()
        kept = index.tolist()
        changes: dict[str, Any] = {}
        for seqs, lens in _PADDED.items():
            kept_lens = getattr(self, lens)[index]
            width = int(kept_lens.max()) if kept else 0
            changes[seqs] = getattr(self, seqs)[index, :width]
            changes[lens] = kept_lens
        for f in fields(self):
            if f.name not in changes:
                values = getattr(self, f.name)
                changes[f.name] = [values[i] for i in kept]
        return replace(self, **changes)
