"""Reading a feature store: entries, per-utterance features, integrity checks."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from speechmapper_plugin.checkpoints import SAFETENSORS_DTYPES
from speechmapper_plugin.data.bad_rows_tsv import read_bad_rows_tsv
from speechmapper_plugin.data.feature_store.checksums import sha256_bytes, sha256_file
from speechmapper_plugin.data.feature_store.errors import (
    CorruptShardError,
    FeatureStoreError,
    IncompleteStoreError,
)
from speechmapper_plugin.data.feature_store.index import (
    ShardInfo,
    StoreSummary,
    read_metadata,
)
from speechmapper_plugin.data.feature_store.layout import (
    ERRORS_FILE,
    FEATURES_TENSOR,
    INDEX_FILE,
    SHARD_DIR,
    SUMMARY_FILE,
)
from speechmapper_plugin.data.feature_store.metadata import (
    FeatureEntry,
    FeatureStoreMetadata,
)
from speechmapper_plugin.data.manifest import BadRow


class FeatureStore:
    """A finished feature store, opened for reading.

    Entries keep the store's order (shard by shard, manifest order within a
    shard). Shard files are memory-mapped on first use; each is checked against
    the size and sha256 its record gave at extraction time before any of its
    features is returned, so a truncated, replaced or bit-flipped shard is
    refused with :class:`CorruptShardError` instead of feeding training garbage.

    Thread-safe for concurrent :meth:`read` calls (data-pipeline workers).

    :param verify_checksums: Hash each shard on first open (reads it once,
        ~1 GB/s); size and header checks are always done.
    :param max_open_shards: Memory-mapped shards kept open (least recently
        used are closed first).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        verify_checksums: bool = True,
        max_open_shards: int = 64,
    ) -> None:
        self.path = Path(path)
        self.metadata: FeatureStoreMetadata = read_metadata(self.path)
        self.summary: StoreSummary = _read_summary(self.path)
        self.entries: Sequence[FeatureEntry] = _read_index(self.path, self.summary)

        self._verify_checksums = verify_checksums
        self._max_open_shards = max(1, max_open_shards)
        self._shards: dict[int, ShardInfo] = {s.index: s for s in self.summary.shards}
        self._by_id: dict[str, int] | None = None
        self._open: OrderedDict[int, Any] = OrderedDict()
        self._verified: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[FeatureEntry]:
        return iter(self.entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._id_map()

    def entry(self, entry_id: str) -> FeatureEntry:
        try:
            return self.entries[self._id_map()[entry_id]]
        except KeyError:
            raise KeyError(
                f"No utterance '{entry_id}' in the feature store {self.path}."
            ) from None

    @property
    def skipped(self) -> list[BadRow]:
        """Every row left out of the store, with its reason (``errors.tsv``)."""
        with (self.path / ERRORS_FILE).open(encoding="utf-8", newline="") as fp:
            return read_bad_rows_tsv(fp)

    def read(
        self, entry: FeatureEntry | str, *, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The features of one utterance.

        :returns: ``[num_frames, dim]`` in the storage dtype, or ``dtype``.
        :raises CorruptShardError: if the entry's shard fails its checks.
        """
        if isinstance(entry, str):
            entry = self.entry(entry)

        handle = self._shard_handle(entry.shard)

        features: Tensor = handle.get_slice(FEATURES_TENSOR)[
            entry.offset : entry.offset + entry.num_frames
        ]

        if features.size(0) != entry.num_frames:
            raise CorruptShardError(
                f"Shard {entry.shard} of {self.path} ends before utterance '{entry.id}' (frames {entry.offset}..{entry.offset + entry.num_frames})."
            )

        return features if dtype is None else features.to(dtype)

    def verify(self) -> None:
        """Check every shard now (size, sha256, header) rather than on first read."""
        for index in self._shards:
            self._shard_handle(index, force_checksum=True)

    def close(self) -> None:
        with self._lock:
            self._open.clear()

    def _id_map(self) -> dict[str, int]:
        if self._by_id is None:
            self._by_id = {e.id: i for i, e in enumerate(self.entries)}
        return self._by_id

    def _shard_handle(self, index: int, *, force_checksum: bool = False) -> Any:
        with self._lock:
            handle = self._open.get(index)
            if handle is not None and not force_checksum:
                self._open.move_to_end(index)
                return handle

            info = self._shards.get(index)
            if info is None:
                raise CorruptShardError(
                    f"Shard {index} is not in the summary of {self.path}."
                )

            path = self.path / SHARD_DIR / info.file

            self._check_shard_file(info, path, force_checksum)

            handle = safe_open(str(path), framework="pt")

            self._check_shard_header(info, path, handle)

            self._open[index] = handle
            while len(self._open) > self._max_open_shards:
                self._open.popitem(last=False)

            return handle

    def _check_shard_file(
        self, info: ShardInfo, path: Path, force_checksum: bool
    ) -> None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CorruptShardError(
                f"Shard file {path} is missing; re-extract the store (rerunning the extraction recomputes missing shards after `rm {path.with_suffix('.json')}`)."
            ) from None

        if size != info.num_bytes:
            raise CorruptShardError(
                f"Shard file {path} has {size} bytes, but {info.num_bytes} were written: it is truncated or was replaced. Delete it and its .json record and rerun the extraction."
            )

        if (
            self._verify_checksums or force_checksum
        ) and info.index not in self._verified:
            digest = sha256_file(path)
            if digest != info.sha256:
                raise CorruptShardError(
                    f"Shard file {path} fails its checksum (sha256 {digest[:12]}..., recorded {info.sha256[:12]}...): its content changed after it was written. Delete it and its .json record and rerun the extraction."
                )
            self._verified.add(info.index)

    def _check_shard_header(self, info: ShardInfo, path: Path, handle: Any) -> None:
        meta = self.metadata
        try:
            shape = handle.get_slice(FEATURES_TENSOR).get_shape()
            dtype = handle.get_slice(FEATURES_TENSOR).get_dtype()
        except Exception as ex:  # safetensors raises its own error types
            raise CorruptShardError(
                f"Shard file {path} has no `{FEATURES_TENSOR}` tensor: {ex}"
            ) from None

        if (
            list(shape) != [info.num_frames, meta.dim]
            or SAFETENSORS_DTYPES.get(dtype) != meta.torch_dtype
        ):
            raise CorruptShardError(
                f"Shard file {path} holds {dtype} {list(shape)}, expected {meta.dtype} [{info.num_frames}, {meta.dim}]."
            )


def _read_summary(store: Path) -> StoreSummary:
    path = store / SUMMARY_FILE
    if not path.is_file():
        raise IncompleteStoreError(
            f"The feature store {store} is not finished: {SUMMARY_FILE} is missing. Rerun the extraction with the same output directory, or, if every shard is done, `python -m speechmapper_plugin.data.feature_store.rebuild_index {store}`."
        )
    return StoreSummary.from_json(path.read_text(encoding="utf-8"), source=path)


def _read_index(store: Path, summary: StoreSummary) -> list[FeatureEntry]:
    path = store / INDEX_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IncompleteStoreError(
            f"The index {path} of the feature store is missing."
        ) from None

    if sha256_bytes(data) != summary.index_sha256:
        raise FeatureStoreError(
            f"The index {path} does not match the store summary (changed after the merge). Rebuild it: `python -m speechmapper_plugin.data.feature_store.rebuild_index {store}`."
        )

    entries = [
        FeatureEntry.from_dict(json.loads(line)) for line in data.splitlines() if line
    ]

    if len(entries) != summary.num_entries:
        raise FeatureStoreError(
            f"The index {path} has {len(entries)} entries, the summary {summary.num_entries}."
        )

    return entries
