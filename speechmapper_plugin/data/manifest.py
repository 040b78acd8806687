"""Audio manifests: one utterance per row (id, audio file, length, transcript, language).

Two formats, chosen by extension (column names: see ``manifest_columns.py``):

- ``.tsv``: a header row naming the columns, tab-separated, no quoting. An
  optional first line holding only a directory is the audio root (fairseq2's
  wav2vec2 manifests start that way). fairseq2's headerless layout (root line,
  then ``path<TAB>num_samples`` rows, transcripts in a sibling ``.wrd`` file
  with one line per row) is read as well.
- ``.jsonl``: one JSON object per line with the same field names.

A row may point at a **segment** of a longer file (EuroParl-ST, long
recordings): ``offset`` is where it starts and ``duration`` how long it is,
both in seconds (NeMo's manifest convention); without ``duration`` the segment
runs to the end of the file. Decoding keeps exactly the samples
``[round(offset * sr), round(offset * sr) + round(duration * sr))`` at the
file's own rate ``sr``, before downmixing and resampling.

Relative audio paths are resolved against ``root`` (argument) or else the
manifest's root line or else the manifest's directory. Reading never stops at a
bad row: malformed rows come back as :class:`BadRow` entries. Only a manifest
that cannot be used at all raises :class:`ManifestError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ManifestFormat = Literal["tsv", "jsonl", "fairseq2_tsv"]


class ManifestError(ValueError):
    """Raised when a manifest is unusable as a whole (missing, unknown format,
    no header, or no usable row)."""


@dataclass(frozen=True)
class ManifestRow:
    """One usable manifest row."""

    id: str
    """Unique utterance id (derived from the audio path when the manifest has none)."""

    audio: Path
    """Absolute path of the audio file."""

    transcript: str
    """Stripped of leading/trailing whitespace; may be empty (validation flags it)."""

    num_samples: int | None = None
    """Declared length in samples at the file's own sample rate, if given."""

    duration: float | None = None
    """Declared length in seconds, if given: of the file, or of the segment
    when ``offset`` is set."""

    lang: str | None = None
    """Language code, if given."""

    line_no: int = 0
    """1-based line of the row in the manifest file."""

    offset: float | None = None
    """Start of the segment in seconds, for a row that is a segment of a longer
    file; ``None`` for a whole file."""

    @property
    def is_segment(self) -> bool:
        return self.offset is not None


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used, and why."""

    line_no: int
    """1-based line in the manifest; 0 when unknown."""

    id: str | None
    """The row's id when it could be read."""

    reason: str
    """One of the codes in :mod:`speechmapper_plugin.data.reasons`."""

    detail: str = ""
    """What exactly is wrong, for humans."""

    def describe(self) -> str:
        who = f"id '{self.id}'" if self.id is not None else "no id"
        where = f"line {self.line_no}" if self.line_no else "unknown line"
        detail = f": {self.detail}" if self.detail else ""
        return f"{where} ({who}) {self.reason}{detail}"


@dataclass
class ManifestReadResult:
    """The rows of a manifest, the rows that could not be parsed, and how it was read."""

    path: Path
    format: ManifestFormat
    root: Path
    """The directory relative audio paths were resolved against."""

    rows: list[ManifestRow] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)

    columns: dict[str, str] = field(default_factory=dict)
    """Field -> the manifest column (or JSON key) it was read from (TSV only)."""

    @property
    def num_lines(self) -> int:
        """Data rows seen: good plus bad."""
        return len(self.rows) + len(self.bad_rows)


def read_manifest(
    path: str | Path, *, root: str | Path | None = None, require_rows: bool = True
) -> ManifestReadResult:
    """Read a ``.tsv`` or ``.jsonl`` manifest.

    :param root: Resolve relative audio paths against this directory instead
        of the manifest's root line or directory.
    :param require_rows: Raise if no row is usable (a validator passes
        ``False`` to list every bad row instead).
    :raises ManifestError: if the manifest is missing, has an unknown
        extension, a TSV has no header, or (with ``require_rows``) no row is usable.
    """
    from speechmapper_plugin.data.manifest_jsonl import read_jsonl_manifest
    from speechmapper_plugin.data.manifest_tsv import read_tsv_manifest

    path = Path(path).expanduser()

    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ManifestError(f"The manifest {path} {what}.")

    suffix = path.suffix.lower()

    root_dir = Path(root).expanduser().resolve() if root is not None else None

    if suffix == ".tsv":
        result = read_tsv_manifest(path, root_dir)
    elif suffix in (".jsonl", ".ndjson"):
        result = read_jsonl_manifest(path, root_dir)
    else:
        raise ManifestError(
            f"The manifest {path} has the unknown extension '{path.suffix}'; use `.tsv` (header row + tab-separated columns) or `.jsonl` (one JSON object per line)."
        )

    if require_rows and not result.rows:
        shown = "; ".join(b.describe() for b in result.bad_rows[:5])
        more = (
            ""
            if len(result.bad_rows) <= 5
            else f"; and {len(result.bad_rows) - 5} more"
        )
        raise ManifestError(
            f"The manifest {path} has no usable row ({len(result.bad_rows)} bad row(s){': ' + shown + more if shown else ''}). Run `python -m speechmapper_plugin.data.validate_manifest {path}` for a full report."
        )

    return result
