"""FLEURS (Hugging Face ``google/fleurs`` repository) -> an audio manifest.

Layout of the dataset repository (its loading script ``fleurs.py``:
``data/{lang}/{split}.tsv`` and ``data/{lang}/audio/{split}.tar.gz``, the
archive holding ``{split}/<file name>``)::

    fleurs/data/en_us/test.tsv
    fleurs/data/en_us/audio/test.tar.gz   ->  tar -xzf it into data/en_us/audio/
    fleurs/data/en_us/audio/test/<file name>.wav

The TSV has no header and seven tab-separated columns: sentence id, file name,
raw transcription, normalised transcription, characters/phonemes, number of
samples (16 kHz), gender. The sentence id is shared by every speaker who read
the sentence (and by all languages), so the manifest's id is the file name's
stem. Splits are ``train``, ``dev`` and ``test``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from speechmapper_plugin.data.convert.audio_files import require_file
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.convert.writing import write_asr_manifest
from speechmapper_plugin.data.manifest import ManifestRow
from speechmapper_plugin.data.reasons import (
    DUPLICATE_ID,
    EMPTY_TRANSCRIPT,
    MALFORMED_ROW,
    MISSING_FILE,
)

SPLITS = ("train", "dev", "test")

NUM_COLUMNS = 7

TextField = Literal["raw", "normalized"]


def language_dir(root: Path, lang: str) -> Path:
    """``root`` may be the repository, its ``data`` folder or ``data/<lang>``."""
    for candidate in (root / "data" / lang, root / lang, root):
        if candidate.is_dir() and candidate.name == lang:
            return candidate
    raise ConvertError(
        f"No FLEURS language folder '{lang}' under {root}: expected {root / 'data' / lang} "
        "(a local copy of the Hugging Face repository google/fleurs)."
    )


def read_fleurs(
    root: Path, lang: str, split: str, text: TextField, report: ConversionReport
) -> list[ManifestRow]:
    if split not in SPLITS:
        raise ConvertError(f"FLEURS has the splits {', '.join(SPLITS)}, not '{split}'.")

    directory = language_dir(root, lang)
    tsv = require_file(directory / f"{split}.tsv", "The FLEURS metadata file")

    audio_dir = directory / "audio" / split
    if not audio_dir.is_dir():
        archive = directory / "audio" / f"{split}.tar.gz"
        how = (
            f"Unpack {archive}: `tar -xzf {archive} -C {directory / 'audio'}`."
            if archive.is_file()
            else f"Download data/{lang}/audio/{split}.tar.gz of google/fleurs and unpack it there."
        )
        raise ConvertError(f"The FLEURS audio folder {audio_dir} does not exist. {how}")

    code = lang.split("_")[0]
    column = 2 if text == "raw" else 3
    seen: set[str] = set()
    entries = []

    with tsv.open(encoding="utf-8", newline="") as fp:
        reader = csv.reader(fp, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line_no, values in enumerate(reader, start=1):
            if not values or not "".join(values).strip():
                continue
            if len(values) != NUM_COLUMNS:
                report.skip(
                    MALFORMED_ROW,
                    f"{tsv}:{line_no} has {len(values)} columns, not {NUM_COLUMNS}",
                )
                continue
            file_name = values[1].strip()
            audio = audio_dir / file_name
            utt_id = Path(file_name).stem
            if utt_id in seen:
                report.skip(DUPLICATE_ID, f"{tsv}:{line_no} ({file_name})")
                continue
            if not values[column].strip():
                report.skip(EMPTY_TRANSCRIPT, f"{tsv}:{line_no} ({file_name})")
                continue
            if not audio.is_file():
                report.skip(MISSING_FILE, str(audio))
                continue
            try:
                num_samples: int | None = int(values[5])
            except ValueError:
                num_samples = None
            seen.add(utt_id)
            entries.append(
                ManifestRow(
                    utt_id,
                    audio.resolve(),
                    values[column],
                    num_samples=num_samples,
                    lang=code,
                )
            )
    return entries


def convert_fleurs(
    root: Path, lang: str, split: str, out: Path, *, text: TextField = "raw"
) -> ConversionReport:
    report = ConversionReport(f"fleurs {lang} {split}")
    return write_asr_manifest(
        report,
        read_fleurs(root, lang, split, text, report),
        out,
        nothing=f"No usable FLEURS utterance for {lang} {split} under {root}.",
    )
