"""Where everything of a feature store lives on disk.

::

    STORE/
      store.json                  what the features are (encoder, layer, dtype, ...)
      manifest_errors.json        manifest rows left out before extraction
      shards/shard_000042.safetensors   one [frames, dim] tensor named "features"
      shards/shard_000042.json          its record: sha256, entries, skipped rows
      index.jsonl                 one entry per utterance (merged from the records)
      errors.tsv                  every skipped row: line, id, reason, detail
      summary.json                totals and the shard table; written last, so
                                  its presence means "complete"
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

STORE_FORMAT: Final = "speechmapper-feature-store"
FORMAT_VERSION: Final = 1

METADATA_FILE: Final = "store.json"
MANIFEST_ERRORS_FILE: Final = "manifest_errors.json"
SHARD_DIR: Final = "shards"
INDEX_FILE: Final = "index.jsonl"
ERRORS_FILE: Final = "errors.tsv"
SUMMARY_FILE: Final = "summary.json"

FEATURES_TENSOR: Final = "features"
"""The name of the single tensor in every shard file."""


def shard_stem(index: int) -> str:
    return f"shard_{index:06d}"


def shard_file(store: Path, index: int) -> Path:
    return store / SHARD_DIR / f"{shard_stem(index)}.safetensors"


def shard_record_file(store: Path, index: int) -> Path:
    return store / SHARD_DIR / f"{shard_stem(index)}.json"
