"""The TSV layout and the reason counts of bad-row reports (validation reports,
a store's ``errors.tsv``, skipped examples)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

from speechmapper_plugin.data.manifest import BadRow

BAD_ROWS_COLUMNS = ("line", "id", "reason", "detail")


def write_bad_rows_tsv(fp: TextIO, bad_rows: Iterable[BadRow]) -> None:
    """A header, then ``line, id, reason, detail`` per row (quoted where needed)."""
    writer = csv.writer(fp, delimiter="\t", lineterminator="\n")
    writer.writerow(BAD_ROWS_COLUMNS)
    for b in bad_rows:
        writer.writerow(
            [b.line_no, b.id if b.id is not None else "", b.reason, b.detail]
        )


def read_bad_rows_tsv(fp: TextIO) -> list[BadRow]:
    return [
        BadRow(int(r["line"]), r["id"] or None, r["reason"], r["detail"])
        for r in csv.DictReader(fp, delimiter="\t")
    ]


def count_reasons(bad_rows: Iterable[BadRow]) -> dict[str, int]:
    """Reason code -> number of rows, sorted by code."""
    return dict(sorted(Counter(b.reason for b in bad_rows).items()))
