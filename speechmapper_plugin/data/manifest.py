"""The rows of an audio manifest: one utterance per row (id, audio file,
length, transcript, language), the rows that cannot be used, and the errors.

A row may point at a **segment** of a longer file (EuroParl-ST, long
recordings): ``offset`` is where it starts and ``duration`` how long it is,
both in seconds (NeMo's manifest convention); without ``duration`` the segment
runs to the end of the file. Decoding keeps exactly the samples
``[round(offset * sr), round(offset * sr) + round(duration * sr))`` at the
file's own rate ``sr``, before downmixing and resampling.

Reading (:func:`speechmapper_plugin.data.manifest_reader.read_manifest`) is in
its own module, so that the format readers can import these types without an
import cycle.
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

    def add(self, row: ManifestRow | BadRow) -> None:
        """File a parsed row under ``rows`` or ``bad_rows``."""
        if isinstance(row, BadRow):
            self.bad_rows.append(row)
        else:
            self.rows.append(row)

    @property
    def num_lines(self) -> int:
        """Data rows seen: good plus bad."""
        return len(self.rows) + len(self.bad_rows)
