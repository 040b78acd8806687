"""TSV manifests: a header row naming the columns, or fairseq2's wav2vec2 layout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from speechmapper_plugin.data.manifest import (
    BadRow,
    ManifestError,
    ManifestReadResult,
)
from speechmapper_plugin.data.manifest_columns import (
    REQUIRED_FIELDS,
    accepted_names,
    build_row,
    match_fields,
)
from speechmapper_plugin.data.reasons import MALFORMED_ROW


def read_tsv_manifest(path: Path, root: Path | None) -> ManifestReadResult:
    lines = list(_read_lines(path))

    bad_rows = [BadRow(n, None, MALFORMED_ROW, text) for n, text, ok in lines if not ok]
    lines_ok = [(n, text) for n, text, ok in lines if ok]

    content = [(n, text) for n, text in lines_ok if text.strip()]
    if not content:
        raise ManifestError(f"The manifest {path} is empty.")

    root_line: str | None = None

    first_no, first = content[0]
    if "\t" not in first and "audio" not in match_fields([first]):
        # fairseq2 style: the first line is the audio root directory.
        root_line = first.strip()
        content = content[1:]
        if not content:
            raise ManifestError(
                f"The manifest {path} holds only a root line ({root_line})."
            )

    root_dir = _pick_root(path, root, root_line)

    header_no, header = content[0]
    names = header.split("\t")
    fields = match_fields(names)

    if "audio" not in fields:
        if root_line is not None:
            return _read_fairseq2_layout(path, root_dir, lines_ok, first_no, bad_rows)

        raise ManifestError(
            f"The manifest {path} has no header row: line {header_no} names no audio column. The first line must name the columns, tab-separated, e.g. `id<TAB>audio<TAB>num_samples<TAB>text<TAB>lang`; the audio column may be called {accepted_names('audio')}."
        )

    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        wanted = "; ".join(f"{f}: {accepted_names(f)}" for f in missing)
        raise ManifestError(
            f"The header of the manifest {path} (line {header_no}) lacks required column(s) {', '.join(missing)} (accepted names: {wanted})."
        )

    result = ManifestReadResult(
        path=path,
        format="tsv",
        root=root_dir,
        bad_rows=bad_rows,
        columns={f: names[i].strip() for f, i in fields.items()},
    )

    for line_no, text in content[1:]:
        values = text.split("\t")
        if len(values) != len(names):
            result.bad_rows.append(
                BadRow(
                    line_no,
                    _peek_id(values, fields),
                    MALFORMED_ROW,
                    f"expected {len(names)} tab-separated columns (as in the header), found {len(values)}",
                )
            )
            continue

        row = build_row(
            {f: values[i] for f, i in fields.items()},
            line_no=line_no,
            root=root_dir,
            has_id_field="id" in fields,
        )
        result.add(row)

    result.bad_rows.sort(key=lambda b: b.line_no)

    return result


def _read_fairseq2_layout(
    path: Path,
    root: Path,
    lines: list[tuple[int, str]],
    root_line_no: int,
    bad_rows: list[BadRow],
) -> ManifestReadResult:
    """Root line, ``path<TAB>num_samples`` rows, transcripts in ``<stem>.wrd``."""
    wrd_path = path.with_suffix(".wrd")
    if not wrd_path.is_file():
        raise ManifestError(
            f"The manifest {path} looks like a fairseq2 wav2vec2 manifest (a root line, then `path<TAB>num_samples` rows without a header), but its transcript file {wrd_path} does not exist. Add it (one transcript per row) or add a header row naming the columns."
        )

    data = [(n, text) for n, text in lines if n > root_line_no]
    while data and not data[-1][1].strip():
        data.pop()

    transcripts = [text for _, text, ok in _read_lines(wrd_path)]
    while transcripts and not transcripts[-1].strip():
        transcripts.pop()

    if len(transcripts) != len(data):
        raise ManifestError(
            f"The manifest {path} has {len(data)} rows but its transcript file {wrd_path} has {len(transcripts)} lines; they must match one to one."
        )

    result = ManifestReadResult(
        path=path,
        format="fairseq2_tsv",
        root=root,
        bad_rows=bad_rows,
        columns={
            "audio": "column 1",
            "num_samples": "column 2",
            "transcript": wrd_path.name,
        },
    )

    for (line_no, text), transcript in zip(data, transcripts, strict=True):
        values = text.split("\t")
        if len(values) != 2:
            result.bad_rows.append(
                BadRow(
                    line_no,
                    None,
                    MALFORMED_ROW,
                    f"expected 2 tab-separated columns (path, num_samples), found {len(values)}",
                )
            )
            continue

        row = build_row(
            {"audio": values[0], "num_samples": values[1], "transcript": transcript},
            line_no=line_no,
            root=root,
            has_id_field=False,
        )
        result.add(row)

    result.bad_rows.sort(key=lambda b: b.line_no)

    return result


def _read_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """``(line_no, text, ok)``; a line that is not UTF-8 yields ``ok=False``
    with the error as text."""
    try:
        fp = path.open("rb")
    except OSError as ex:
        raise ManifestError(f"The manifest {path} cannot be read: {ex}") from ex

    with fp:
        for line_no, raw in enumerate(fp, start=1):
            raw = raw.rstrip(b"\r\n")
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield line_no, raw.decode("utf-8"), True
            except UnicodeDecodeError as ex:
                yield (
                    line_no,
                    f"not valid UTF-8 ({ex.reason} at byte {ex.start})",
                    False,
                )


def _pick_root(path: Path, root: Path | None, root_line: str | None) -> Path:
    if root is not None:
        return root

    if root_line is not None:
        line_root = Path(root_line).expanduser()
        if not line_root.is_absolute():
            line_root = path.parent.resolve() / line_root
        return line_root

    return path.parent.resolve()


def _peek_id(values: list[str], fields: dict[str, int]) -> str | None:
    index = fields.get("id")
    if index is None or index >= len(values):
        return None
    return values[index].strip() or None
