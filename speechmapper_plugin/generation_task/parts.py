"""Resumable per-rank output: each rank appends its records (JSONL) and its
skipped examples (the bad-row TSV) to part files of its own, flushed after
every batch; a rerun reads what every rank (of any world size) wrote, and
rank 0 merges the parts into the final files.

A line cut off by a kill is dropped before appending, and ignored when read,
so its example is simply done again. The feature store resumes another way
(whole shards of fixed row ranges, each renamed into place when complete):
there a unit of work is a shard, here it is one example, and a rerun deals the
examples still to do over however many ranks it has.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, final

from speechmapper_plugin.data.bad_rows_tsv import read_bad_rows_tsv, write_bad_rows_tsv
from speechmapper_plugin.data.manifest import BadRow

PARTS_DIR = "hypotheses.parts"


@final
class RankParts:
    """This rank's part files in ``OUT/hypotheses.parts/``."""

    def __init__(self, output_dir: Path, rank: int) -> None:
        parts = output_dir / PARTS_DIR
        parts.mkdir(parents=True, exist_ok=True)

        self._records_path = parts / f"rank_{rank:03d}.jsonl"
        self._skipped_path = parts / f"skipped_rank_{rank:03d}.tsv"

        _cut_partial_line(self._records_path)
        _cut_partial_line(self._skipped_path)

        self._records = self._records_path.open("a", encoding="utf-8")
        self.num_records = 0
        self.num_skipped = 0

    def append(self, records: Iterable[dict[str, Any]], skipped: list[BadRow]) -> None:
        """Appends a batch's records and skipped examples, flushed."""
        for record in records:
            self._records.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.num_records += 1
        self._records.flush()

        if not skipped and self._skipped_path.exists():
            return
        with self._skipped_path.open("a", encoding="utf-8") as fp:
            write_bad_rows_tsv(fp, skipped, header=fp.tell() == 0)
        self.num_skipped += len(skipped)

    def close(self) -> None:
        self._records.close()


def read_parts(
    output_dir: Path, records_file: str, skipped_file: str
) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """The complete records and skipped examples of the merged files
    (``records_file``, ``skipped_file`` in ``output_dir``; a finished run's)
    and of every rank's parts (an interrupted run's)."""
    parts = output_dir / PARTS_DIR
    records = [
        json.loads(line)
        for path in [output_dir / records_file, *sorted(parts.glob("rank_*.jsonl"))]
        for line in _complete_lines(path)
        if line.strip()
    ]
    skipped: list[BadRow] = []
    for path in [output_dir / skipped_file, *sorted(parts.glob("skipped_rank_*.tsv"))]:
        lines = _complete_lines(path)
        if lines:
            skipped.extend(read_bad_rows_tsv(io.StringIO("\n".join(lines) + "\n")))
    return records, skipped


def _cut_partial_line(path: Path) -> None:
    """Drop a last line without its newline (a write cut off by a kill)."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as fp:
            fp.truncate(end)


def _complete_lines(path: Path) -> list[str]:
    """The newline-terminated lines of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1]
