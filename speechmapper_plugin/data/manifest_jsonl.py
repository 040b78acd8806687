"""JSONL manifests: one JSON object per line, same field names as the TSV header."""

from __future__ import annotations

import json
from pathlib import Path

from speechmapper_plugin.data.manifest import (
    BadRow,
    ManifestError,
    ManifestReadResult,
    ManifestRow,
)
from speechmapper_plugin.data.manifest_columns import build_row, match_fields
from speechmapper_plugin.data.reasons import MALFORMED_ROW


def read_jsonl_manifest(path: Path, root: Path | None) -> ManifestReadResult:
    root_dir = root if root is not None else path.parent.resolve()

    result = ManifestReadResult(path=path, format="jsonl", root=root_dir)

    try:
        fp = path.open("rb")
    except OSError as ex:
        raise ManifestError(f"The manifest {path} cannot be read: {ex}") from ex

    num_content_lines = 0

    with fp:
        for line_no, raw in enumerate(fp, start=1):
            if not raw.strip():
                continue

            num_content_lines += 1

            row = _parse_line(raw, line_no, root_dir)
            result.add(row)

    if num_content_lines == 0:
        raise ManifestError(f"The manifest {path} is empty.")

    return result


def _parse_line(raw: bytes, line_no: int, root: Path) -> ManifestRow | BadRow:
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as ex:
        return BadRow(line_no, None, MALFORMED_ROW, f"not valid UTF-8 ({ex.reason})")
    except json.JSONDecodeError as ex:
        return BadRow(
            line_no, None, MALFORMED_ROW, f"invalid JSON: {ex.msg} at column {ex.colno}"
        )

    if not isinstance(obj, dict):
        return BadRow(
            line_no,
            None,
            MALFORMED_ROW,
            f"expected a JSON object, found {type(obj).__name__}",
        )

    keys = list(obj)
    fields = match_fields([str(k) for k in keys])

    values = {f: obj[keys[i]] for f, i in fields.items()}

    return build_row(values, line_no=line_no, root=root, has_id_field="id" in fields)
