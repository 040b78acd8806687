"""Validate an audio manifest: ``python -m speechmapper_plugin.data.validate_manifest MANIFEST``.

Prints the counts per reason and every bad row, writes them as TSV
(``line, id, reason, detail``) next to the manifest (or to ``--report``, never
into the working directory) and exits with 1 if any row is bad, 2 if the
manifest is unusable as a whole, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from speechmapper_plugin.data.manifest import ManifestError
from speechmapper_plugin.data.manifest_validation import (
    DEFAULT_FRAME_AVERAGING,
    default_min_num_samples,
    validate_manifest,
)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.data.validate_manifest",
        description="Check every row of a .tsv/.jsonl audio manifest and report all bad rows.",
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument(
        "--root",
        type=Path,
        help="directory relative audio paths are resolved against (default: the manifest's root line, else its directory)",
    )
    parser.add_argument(
        "--no-audio-check",
        action="store_true",
        help="do not decode audio; only check that files exist and are not empty",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="TSV report of the bad rows (default: MANIFEST.validation.tsv, next to the manifest)",
    )
    parser.add_argument(
        "--frame-averaging",
        type=int,
        default=DEFAULT_FRAME_AVERAGING,
        help="the extraction's frame averaging; sets the shortest usable audio (default: 2, i.e. 880 samples at 16 kHz)",
    )
    parser.add_argument(
        "--num-workers", type=int, help="decoding threads (default: up to 8)"
    )
    parser.add_argument(
        "--max-print", type=int, help="print at most this many bad rows (default: all)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)

    try:
        report = validate_manifest(
            args.manifest,
            root=args.root,
            check_audio=not args.no_audio_check,
            min_num_samples=default_min_num_samples(args.frame_averaging),
            num_workers=args.num_workers,
            progress=True,
        )
    except ManifestError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2

    for line in report.summary_lines():
        print(line)

    shown = (
        report.problems if args.max_print is None else report.problems[: args.max_print]
    )
    if shown:
        print("Bad rows:")
        for problem in shown:
            print(f"  {problem.describe()}")
        if len(shown) < len(report.problems):
            print(
                f"  ... and {len(report.problems) - len(shown)} more (see the report)"
            )

    # By default ``MANIFEST.validation.tsv`` in the manifest's directory: the
    # report belongs with its input, not with wherever the command was run.
    manifest = args.manifest
    report_path = args.report or manifest.with_name(f"{manifest.name}.validation.tsv")
    report.write_tsv(report_path)
    print(f"Report: {report_path}")

    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
