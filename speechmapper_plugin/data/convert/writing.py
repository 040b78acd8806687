"""Writing converted corpora: audio manifests (TSV) and instruction files (JSONL)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from speechmapper_plugin.data.convert.report import ConversionReport
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_st_examples,
    write_instructions,
)

_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """Tabs, newlines and runs of spaces become one space: a TSV cell."""
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a converted audio manifest."""

    id: str
    audio: Path
    text: str
    lang: str | None = None
    num_samples: int | None = None
    offset: float | None = None
    duration: float | None = None


def write_manifest(path: Path, entries: Sequence[ManifestEntry]) -> int:
    """A header-row TSV that :func:`speechmapper_plugin.data.read_manifest`
    reads: ``id, audio, [num_samples], [offset, duration], text, lang``."""
    columns = ["id", "audio"]
    if any(e.num_samples is not None for e in entries):
        columns.append("num_samples")
    if any(e.offset is not None for e in entries):
        columns += ["offset", "duration"]
    columns += ["text", "lang"]

    def cell(entry: ManifestEntry, column: str) -> str:
        value = getattr(entry, column)
        if value is None:
            return ""
        return one_line(str(value))  # floats: shortest exact repr

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fp:
        fp.write("\t".join(columns) + "\n")
        for entry in entries:
            fp.write("\t".join(cell(entry, c) for c in columns) + "\n")
    return len(entries)


@dataclass(frozen=True)
class TranslationPair:
    """A source utterance (its transcript in ``record``) and its translation."""

    record: SpeechRecord
    translation: str


def write_translation_outputs(
    report: ConversionReport,
    pairs: Sequence[TranslationPair],
    *,
    src: str,
    tgt: str,
    manifest: Path | None,
    instructions: Path | None,
    seed: int,
) -> None:
    """The outputs of a speech-translation corpus: a source-language ASR
    manifest and/or an ST instruction file (``response`` = translation,
    ``transcript`` = source), recorded in ``report``."""
    if manifest is not None:
        write_manifest(
            manifest,
            [
                ManifestEntry(
                    p.record.id,
                    Path(p.record.audio or ""),
                    p.record.transcript or "",
                    src,
                    offset=p.record.offset,
                    duration=p.record.duration,
                )
                for p in pairs
            ],
        )
        report.outputs.append(manifest)
    if instructions is not None:
        write_instructions(
            instructions,
            build_st_examples(
                ((p.record, p.translation, tgt) for p in pairs), seed=seed
            ),
        )
        report.outputs.append(instructions)
    report.num_written = len(pairs)
