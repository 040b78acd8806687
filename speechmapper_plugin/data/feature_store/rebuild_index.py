"""Rebuild a store's index from its shard records:
``python -m speechmapper_plugin.data.feature_store.rebuild_index STORE [--verify] [--allow-incomplete]``.

Use it after copying shards between machines, after deleting corrupt shards
(with ``--allow-incomplete``), or when an extraction's final merge did not run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from speechmapper_plugin.data.feature_store.errors import FeatureStoreError
from speechmapper_plugin.data.feature_store.index import merge_index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.data.feature_store.rebuild_index",
        description="Merge the finished shards of a feature store into its index.",
    )
    parser.add_argument("store", type=Path)
    parser.add_argument(
        "--verify", action="store_true", help="re-hash every shard file"
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="index the finished shards even if some are missing",
    )
    args = parser.parse_args(argv)

    try:
        summary = merge_index(
            args.store,
            allow_incomplete=args.allow_incomplete,
            verify_checksums=args.verify,
        )
    except FeatureStoreError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1

    state = (
        "complete"
        if summary.complete
        else f"INCOMPLETE (missing shards {summary.missing_shards})"
    )
    print(
        f"{args.store}: {state}; {summary.num_entries} utterances, {summary.num_skipped} skipped, {summary.audio_seconds / 3600:.3f} h of audio in {len(summary.shards)} shards ({summary.feature_bytes / 2**20:.1f} MiB)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
