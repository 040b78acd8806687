"""Writing a feature store: creating/reopening it, and writing shards atomically."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors
from torch import Tensor

from speechmapper_plugin.atomic_files import (
    atomic_write_bytes,
    atomic_write_text,
    remove_temp_files,
)
from speechmapper_plugin.data.feature_store.checksums import sha256_bytes
from speechmapper_plugin.data.feature_store.errors import (
    FeatureStoreError,
    StoreMismatchError,
)
from speechmapper_plugin.data.feature_store.layout import (
    FEATURES_TENSOR,
    FORMAT_VERSION,
    MANIFEST_ERRORS_FILE,
    METADATA_FILE,
    SHARD_DIR,
    STORE_FORMAT,
    shard_file,
    shard_record_file,
    shard_stem,
)
from speechmapper_plugin.data.feature_store.metadata import (
    FeatureEntry,
    FeatureStoreMetadata,
    ShardRecord,
    bad_rows_to_json,
)
from speechmapper_plugin.data.feature_store.shards import ShardPlan
from speechmapper_plugin.data.manifest import BadRow, ManifestRow


def create_or_check_store(
    store: Path, metadata: FeatureStoreMetadata, manifest_bad_rows: list[BadRow]
) -> bool:
    """Create ``store`` with ``metadata``, or check that an existing store was
    made with the same settings (so resuming cannot mix features).

    Call on one process only (rank 0), before any shard is written.

    :returns: ``True`` if the store already existed (a resume).
    :raises StoreMismatchError: naming the settings that differ.
    """
    meta_path = store / METADATA_FILE

    if meta_path.exists():
        existing = FeatureStoreMetadata.from_json(
            meta_path.read_text(), source=meta_path
        )
        check_same_identity(existing, metadata, store)
        return True

    (store / SHARD_DIR).mkdir(parents=True, exist_ok=True)

    atomic_write_text(store / MANIFEST_ERRORS_FILE, bad_rows_to_json(manifest_bad_rows))
    atomic_write_text(meta_path, metadata.to_json())

    return False


def check_same_identity(
    existing: FeatureStoreMetadata, wanted: FeatureStoreMetadata, store: Path
) -> None:
    old, new = existing.identity(), wanted.identity()

    diffs = [
        f"{k}: store has {old[k]!r}, run wants {new[k]!r}"
        for k in old
        if old[k] != new[k]
    ]
    if diffs:
        raise StoreMismatchError(
            f"The feature store {store} was created with different settings ({'; '.join(diffs)}). Its shards cannot be reused: write to a new store directory, or delete this one."
        )


class ShardWriter:
    """Collects the features of one shard's rows (in any order) and writes the
    shard once every row is accounted for (stored or skipped).

    Rows are stored in manifest order whatever the batching order, so a shard's
    bytes depend only on its rows.
    """

    def __init__(
        self, store: Path, plan: ShardPlan, *, dim: int, dtype: torch.dtype
    ) -> None:
        self._store = store
        self._plan = plan
        self._dim = dim
        self._dtype = dtype
        self._features: dict[int, tuple[ManifestRow, Tensor, int]] = {}
        self._skipped: dict[int, BadRow] = {}

    @property
    def plan(self) -> ShardPlan:
        return self._plan

    @property
    def num_pending(self) -> int:
        return self._plan.num_rows - len(self._features) - len(self._skipped)

    @property
    def done(self) -> bool:
        return self.num_pending == 0

    def add(
        self, position: int, row: ManifestRow, features: Tensor, num_samples: int
    ) -> None:
        """
        :param position: The row's index in the manifest (within the shard's range).
        :param features: ``[frames, dim]`` in the storage dtype.
        :param num_samples: The audio length at 16 kHz.
        """
        self._check_position(position)

        if features.dim() != 2 or features.size(1) != self._dim:
            raise FeatureStoreError(
                f"Features of row '{row.id}' have shape {tuple(features.shape)}, expected [frames, {self._dim}]."
            )

        if features.dtype != self._dtype:
            raise FeatureStoreError(
                f"Features of row '{row.id}' are {features.dtype}, the store holds {self._dtype}."
            )

        self._features[position] = (row, features.detach().cpu(), num_samples)

    def skip(self, position: int, bad: BadRow) -> None:
        self._check_position(position)

        self._skipped[position] = bad

    def _check_position(self, position: int) -> None:
        plan = self._plan
        if not plan.start <= position < plan.stop:
            raise ValueError(
                f"Row {position} is not in shard {plan.index} [{plan.start}, {plan.stop})."
            )
        if position in self._features or position in self._skipped:
            raise ValueError(
                f"Row {position} of shard {plan.index} was already written."
            )

    def finish(self, *, extraction_seconds: float = 0.0) -> ShardRecord:
        """Write the data file, then the record: the shard is finished once
        both exist. Both writes are atomic.

        :param extraction_seconds: Time spent on the shard, for the record.
        """
        if not self.done:
            raise ValueError(
                f"Shard {self._plan.index} still has {self.num_pending} rows pending."
            )

        store, plan = self._store, self._plan

        entries: list[FeatureEntry] = []
        tensors: list[Tensor] = []
        offset = 0
        audio_samples = 0

        for position in sorted(self._features):
            row, features, num_samples = self._features[position]
            entries.append(
                FeatureEntry(
                    id=row.id,
                    shard=plan.index,
                    offset=offset,
                    num_frames=features.size(0),
                    transcript=row.transcript,
                    lang=row.lang,
                    line_no=row.line_no,
                    num_samples=num_samples,
                )
            )
            tensors.append(features)
            offset += features.size(0)
            audio_samples += num_samples

        if tensors:
            data = torch.cat(tensors).contiguous()
        else:
            data = torch.zeros((0, self._dim), dtype=self._dtype)

        dtype_name = str(self._dtype).removeprefix("torch.")

        # One metadata key holding sorted JSON: safetensors orders several
        # keys arbitrarily, and a shard's bytes must depend on its rows only.
        shard_info = {
            "format": STORE_FORMAT,
            "format_version": FORMAT_VERSION,
            "shard": plan.index,
            "row_start": plan.start,
            "row_stop": plan.stop,
        }
        blob = save_safetensors(
            {FEATURES_TENSOR: data},
            metadata={STORE_FORMAT: json.dumps(shard_info, sort_keys=True)},
        )

        data_path = shard_file(store, plan.index)

        atomic_write_bytes(data_path, blob)

        record = ShardRecord(
            shard=plan.index,
            row_start=plan.start,
            row_stop=plan.stop,
            file=data_path.name,
            sha256=sha256_bytes(blob),
            num_bytes=len(blob),
            num_frames=data.size(0),
            dim=self._dim,
            dtype=dtype_name,
            entries=entries,
            skipped=[self._skipped[p] for p in sorted(self._skipped)],
            audio_seconds=audio_samples / 16_000,
            extraction_seconds=extraction_seconds,
        )

        atomic_write_text(shard_record_file(store, plan.index), record.to_json())

        self._features.clear()

        return record


def discard_unfinished(store: Path, plan: ShardPlan) -> None:
    """Remove what a killed or stale writer left of a shard before redoing it.

    The record goes first: without it nothing accepts the shard, whatever
    state the data file is in.
    """
    shard_record_file(store, plan.index).unlink(missing_ok=True)
    shard_file(store, plan.index).unlink(missing_ok=True)
    remove_temp_files(store / SHARD_DIR, shard_stem(plan.index))
