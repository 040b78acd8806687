"""The one TSV layout of every bad-row report (``validate_manifest``'s report,
a store's ``errors.tsv``, a dataset's ``skipped/<split>.tsv``, the generate
recipe's ``skipped.tsv``) and the reason counts of their summaries."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.manifest import BadRow

BAD_ROWS_COLUMNS = ("line", "id", "reason", "detail")
"""``line`` is the row's 1-based line in its manifest, 0 where an example is
known by id only (a dataset's skips)."""


def write_bad_rows_tsv(
    fp: TextIO, bad_rows: Iterable[BadRow], *, header: bool = True
) -> None:
    """``line, id, reason, detail`` per row (quoted where needed), after a
    header unless appending to a file that has one."""
    writer = csv.writer(fp, delimiter="\t", lineterminator="\n")
    if header:
        writer.writerow(BAD_ROWS_COLUMNS)
    for b in bad_rows:
        writer.writerow(
            [b.line_no, b.id if b.id is not None else "", b.reason, b.detail]
        )


def save_bad_rows_tsv(path: Path, bad_rows: Iterable[BadRow]) -> None:
    """Writes a whole report to ``path`` atomically (creating its directory)."""
    text = io.StringIO()
    write_bad_rows_tsv(text, bad_rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text.getvalue())


def read_bad_rows_tsv(fp: TextIO) -> list[BadRow]:
    return [
        BadRow(int(r["line"]), r["id"] or None, r["reason"], r["detail"])
        for r in csv.DictReader(fp, delimiter="\t")
    ]


def count_reasons(bad_rows: Iterable[BadRow]) -> dict[str, int]:
    """Reason code -> number of rows, sorted by code."""
    return dict(sorted(Counter(b.reason for b in bad_rows).items()))
