"""Row checks that need no audio: empty transcripts and duplicate ids."""

from __future__ import annotations

from collections.abc import Sequence

from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.reasons import DUPLICATE_ID
from speechmapper_plugin.data.usability import transcript_text_problem


def check_transcript(row: ManifestRow) -> BadRow | None:
    problem = transcript_text_problem(row.transcript)

    return None if problem is None else problem.bad_row(row.line_no, row.id)


def split_duplicate_ids(
    rows: Sequence[ManifestRow],
) -> tuple[list[ManifestRow], list[BadRow]]:
    """Keep the first row of every id; the later ones become :class:`BadRow`\\ s.

    Ids key the feature store's index, so a duplicate would silently shadow
    an utterance.
    """
    first_line: dict[str, int] = {}

    unique: list[ManifestRow] = []
    duplicates: list[BadRow] = []

    for row in rows:
        line = first_line.get(row.id)
        if line is None:
            first_line[row.id] = row.line_no
            unique.append(row)
        else:
            duplicates.append(
                BadRow(
                    row.line_no,
                    row.id,
                    DUPLICATE_ID,
                    f"the id is already used on line {line}",
                )
            )

    return unique, duplicates
