"""Writing converted corpora: audio manifests (TSV) and instruction files (JSONL).

A converted manifest row is a :class:`ManifestRow`, the type the reader
returns, so what is written is what is read back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_st_examples,
    write_instructions,
)
from speechmapper_plugin.data.manifest import ManifestRow

_SPACE = re.compile(r"\s+")


def write_manifest(path: Path, rows: Sequence[ManifestRow]) -> int:
    """A header-row TSV that :func:`speechmapper_plugin.data.read_manifest`
    reads: ``id, audio, [num_samples], [offset, duration], text, lang``."""
    fields = ["id", "audio"]
    if any(r.num_samples is not None for r in rows):
        fields.append("num_samples")
    if any(r.offset is not None for r in rows):
        fields += ["offset", "duration"]
    fields += ["transcript", "lang"]

    def cell(row: ManifestRow, field: str) -> str:
        value = getattr(row, field)
        if value is None:
            return ""
        # Tabs, newlines and runs of spaces become one space (floats: their
        # shortest exact repr).
        return _SPACE.sub(" ", str(value)).strip()

    header = ["text" if f == "transcript" else f for f in fields]
    lines = ["\t".join(header), *("\t".join(cell(r, f) for f in fields) for r in rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(rows)


def write_asr_manifest(
    report: ConversionReport, rows: Sequence[ManifestRow], out: Path, *, nothing: str
) -> ConversionReport:
    """Writes an ASR corpus's manifest, recorded in ``report``.

    :param nothing: the message when no row is usable.
    :raises ConvertError: if ``rows`` is empty.
    """
    if not rows:
        raise ConvertError(nothing)
    report.num_written = write_manifest(out, rows)
    report.outputs.append(out)
    return report


@dataclass(frozen=True)
class TranslationPair:
    """A source utterance (its transcript in ``record``) and its translation."""

    record: SpeechRecord
    translation: str


def convert_translation_corpus(
    corpus: str,
    read: Callable[[ConversionReport], tuple[str, str, Sequence[TranslationPair]]],
    *,
    nothing: str,
    manifest: Path | None,
    instructions: Path | None,
    seed: int,
) -> ConversionReport:
    """A speech-translation corpus -> a source-language ASR manifest and/or
    an ST instruction file (``response`` = translation, ``transcript`` =
    source).

    :param read: the pairs (and source and target languages), skipping into
        the report what it cannot use.
    :param nothing: the message when no pair is usable.
    :raises ConvertError: if no output is named or no pair is usable.
    """
    if manifest is None and instructions is None:
        raise ConvertError("Give an output manifest, instruction file, or both.")
    report = ConversionReport(corpus)
    src, tgt, pairs = read(report)
    if not pairs:
        raise ConvertError(nothing)

    if manifest is not None:
        write_manifest(
            manifest,
            [
                ManifestRow(
                    p.record.id,
                    Path(p.record.audio or ""),
                    p.record.transcript or "",
                    lang=src,
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
    return report
