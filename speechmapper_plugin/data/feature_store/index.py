"""Merging the shard records into the store's index, error list and summary.

Rank 0 runs this at the end of an extraction; ``python -m
speechmapper_plugin.data.feature_store.rebuild_index STORE`` reruns it.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.bad_rows_tsv import save_bad_rows_tsv
from speechmapper_plugin.data.feature_store.checksums import sha256_bytes
from speechmapper_plugin.data.feature_store.errors import (
    CorruptShardError,
    FeatureStoreError,
    IncompleteStoreError,
)
from speechmapper_plugin.data.feature_store.layout import (
    ERRORS_FILE,
    INDEX_FILE,
    MANIFEST_ERRORS_FILE,
    METADATA_FILE,
    SUMMARY_FILE,
)
from speechmapper_plugin.data.feature_store.metadata import (
    FeatureStoreMetadata,
    ShardRecord,
    bad_rows_from_json,
)
from speechmapper_plugin.data.feature_store.shards import (
    finished_shard_record,
    plan_shards,
)
from speechmapper_plugin.data.manifest import BadRow


@dataclass(kw_only=True)
class ShardInfo:
    """One row of the summary's shard table: what a reader checks a shard against."""

    index: int
    file: str
    sha256: str
    num_bytes: int
    num_frames: int
    num_entries: int


@dataclass(kw_only=True)
class StoreSummary:
    """Totals of a merged store (``summary.json``)."""

    complete: bool
    """``False`` when merged with missing shards (``allow_incomplete``)."""

    num_shards: int
    missing_shards: list[int] = field(default_factory=list)
    num_entries: int = 0
    num_skipped: int = 0
    num_frames: int = 0
    audio_seconds: float = 0.0
    feature_bytes: int = 0
    """Bytes of the shard files."""

    index_bytes: int = 0
    index_sha256: str = ""
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    shards: list[ShardInfo] = field(default_factory=list)

    @property
    def bytes_per_audio_hour(self) -> float:
        """Shard and index bytes per hour of stored audio."""
        if self.audio_seconds == 0:
            return 0.0
        return (self.feature_bytes + self.index_bytes) * 3600 / self.audio_seconds

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: Path) -> StoreSummary:
        try:
            data = json.loads(text)
            shards = [ShardInfo(**s) for s in data.pop("shards")]
            return cls(**data, shards=shards)
        except (ValueError, TypeError, KeyError) as ex:
            raise FeatureStoreError(
                f"{source} is not a valid store summary: {ex!r}"
            ) from None


def read_metadata(store: Path) -> FeatureStoreMetadata:
    path = store / METADATA_FILE
    if not path.is_file():
        raise FeatureStoreError(
            f"{store} is not a feature store: {METADATA_FILE} is missing. Create one with `python -m recipes.extract_features`."
        )
    return FeatureStoreMetadata.from_json(path.read_text(encoding="utf-8"), source=path)


def merge_index(
    store: Path, *, allow_incomplete: bool = False, verify_checksums: bool = False
) -> StoreSummary:
    """Write ``index.jsonl``, ``errors.tsv`` and (last) ``summary.json`` from
    the finished shards.

    :param allow_incomplete: Merge the finished shards even if some are
        missing (the summary says so); otherwise missing shards raise.
    :param verify_checksums: Re-hash every shard file against its record.
    :raises IncompleteStoreError: listing the unfinished shards.
    """
    store = Path(store)
    metadata = read_metadata(store)

    plans = plan_shards(metadata.num_rows, metadata.rows_per_shard)

    records: list[ShardRecord] = []
    missing: list[int] = []

    for plan in plans:
        record = finished_shard_record(store, plan, verify_checksum=verify_checksums)
        if record is None:
            missing.append(plan.index)
        else:
            records.append(record)

    if missing and not allow_incomplete:
        shown = ", ".join(map(str, missing[:20])) + (
            " ..." if len(missing) > 20 else ""
        )
        raise IncompleteStoreError(
            f"{len(missing)} of {len(plans)} shards of {store} are not finished (shards {shown}). Rerun the extraction with the same output directory to finish them."
        )

    manifest_errors = _read_manifest_errors(store)

    seen: dict[str, int] = {}
    index = io.StringIO()
    summary = StoreSummary(
        complete=not missing, num_shards=len(plans), missing_shards=missing
    )

    for record in records:
        if record.dim != metadata.dim or record.dtype != metadata.dtype:
            raise CorruptShardError(
                f"Shard {record.shard} of {store} holds {record.dim}-d {record.dtype} features, but the store is {metadata.dim}-d {metadata.dtype}."
            )

        for entry in record.entries:
            if entry.id in seen:
                raise FeatureStoreError(
                    f"Id '{entry.id}' is in shards {seen[entry.id]} and {record.shard} of {store}; the shards come from different manifests. Re-extract into a new store."
                )
            seen[entry.id] = record.shard
            index.write(json.dumps(entry.to_dict(), ensure_ascii=False))
            index.write("\n")

        summary.num_entries += len(record.entries)
        summary.num_frames += record.num_frames
        summary.audio_seconds += record.audio_seconds
        summary.feature_bytes += record.num_bytes
        summary.shards.append(
            ShardInfo(
                index=record.shard,
                file=record.file,
                sha256=record.sha256,
                num_bytes=record.num_bytes,
                num_frames=record.num_frames,
                num_entries=len(record.entries),
            )
        )

    skipped: list[BadRow] = list(manifest_errors)
    for record in records:
        skipped.extend(record.skipped)
    skipped.sort(key=lambda b: b.line_no)

    summary.num_skipped = len(skipped)
    for bad in skipped:
        summary.skipped_by_reason[bad.reason] = (
            summary.skipped_by_reason.get(bad.reason, 0) + 1
        )

    index_text = index.getvalue()
    summary.index_bytes = len(index_text.encode("utf-8"))
    summary.index_sha256 = sha256_bytes(index_text.encode("utf-8"))

    # The summary is written last: its presence marks the index as complete.
    (store / SUMMARY_FILE).unlink(missing_ok=True)

    atomic_write_text(store / INDEX_FILE, index_text)

    save_bad_rows_tsv(store / ERRORS_FILE, skipped)

    atomic_write_text(store / SUMMARY_FILE, summary.to_json())

    return summary


def _read_manifest_errors(store: Path) -> list[BadRow]:
    path = store / MANIFEST_ERRORS_FILE
    if not path.exists():
        return []
    return bad_rows_from_json(path.read_text(encoding="utf-8"), source=path)
