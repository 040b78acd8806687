"""Deterministic sharding: which rows form a shard, which rank extracts it,
and whether it is already finished."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechmapper_plugin.data.feature_store.checksums import sha256_file
from speechmapper_plugin.data.feature_store.errors import FeatureStoreError
from speechmapper_plugin.data.feature_store.layout import (
    shard_file,
    shard_record_file,
)
from speechmapper_plugin.data.feature_store.metadata import ShardRecord


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``index`` holds manifest rows ``[start, stop)`` (in manifest order)."""

    index: int
    start: int
    stop: int

    @property
    def num_rows(self) -> int:
        return self.stop - self.start


def plan_shards(num_rows: int, rows_per_shard: int) -> list[ShardPlan]:
    """Fixed slices of ``rows_per_shard`` rows: the plan depends only on the
    manifest and this number, never on the world size, so any rerun (with
    any number of processes) finds the same shards."""
    if rows_per_shard < 1:
        raise ValueError(f"`rows_per_shard` must be positive, but is {rows_per_shard}.")

    return [
        ShardPlan(k, start, min(start + rows_per_shard, num_rows))
        for k, start in enumerate(range(0, num_rows, rows_per_shard))
    ]


def shards_of_rank(
    plans: list[ShardPlan], rank: int, world_size: int
) -> list[ShardPlan]:
    """Round-robin: rank ``r`` of ``W`` takes the shards ``k ≡ r (mod W)``, which
    spreads long and short parts of a sorted manifest evenly over ranks."""
    if not 0 <= rank < world_size:
        raise ValueError(f"`rank` must be in [0, {world_size}), but is {rank}.")

    return [p for p in plans if p.index % world_size == rank]


def read_shard_record(store: Path, index: int) -> ShardRecord | None:
    """The record of shard ``index``; ``None`` if it has none (unfinished)."""
    path = shard_record_file(store, index)

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None

    record = ShardRecord.from_json(text, source=path)
    if record.shard != index:
        raise FeatureStoreError(
            f"{path} is the record of shard {record.shard}, not {index}."
        )

    return record


def finished_shard_record(
    store: Path, plan: ShardPlan, *, verify_checksum: bool = False
) -> ShardRecord | None:
    """The record of a finished shard, or ``None`` if it must be (re)computed.

    Finished means: a record exists for the same rows, its data file exists
    with the recorded size and (with ``verify_checksum``) the recorded sha256.
    A data file without record (killed between the two writes) is unfinished.
    """
    try:
        record = read_shard_record(store, plan.index)
    except FeatureStoreError:
        return None  # A record we cannot parse is as good as none.

    if record is None:
        return None

    if (record.row_start, record.row_stop) != (plan.start, plan.stop):
        return None

    data = shard_file(store, plan.index)
    try:
        size = data.stat().st_size
    except FileNotFoundError:
        return None

    if size != record.num_bytes:
        return None

    if verify_checksum and sha256_file(data) != record.sha256:
        return None

    return record
