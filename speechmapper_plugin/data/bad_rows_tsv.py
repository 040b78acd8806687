"""The TSV layout of bad-row reports (validation reports, a store's ``errors.tsv``)."""

from __future__ import annotations

import csv
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
