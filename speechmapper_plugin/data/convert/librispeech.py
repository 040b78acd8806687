"""LibriSpeech (OpenSLR 12) -> an audio manifest.

Layout of the official tarballs (``test-clean.tar.gz`` unpacks to
``LibriSpeech/test-clean/...``; the corpus's README.TXT, "Organization of the
training and test subsets")::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac

Each ``.trans.txt`` line is ``<utterance-id> <TRANSCRIPT>`` (upper case, no
punctuation but apostrophes). The manifest keeps the transcript as published;
WER normalisation is the evaluation's job. A FLAC file that no ``.trans.txt``
line names (its chapter lost its ``.trans.txt``, or the file lists it not) is
counted as a skip, never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

from speechmapper_plugin.data.convert.audio_files import require_dir
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.convert.writing import write_asr_manifest
from speechmapper_plugin.data.manifest import ManifestRow
from speechmapper_plugin.data.reasons import (
    EMPTY_TRANSCRIPT,
    MISSING_FILE,
    MISSING_TRANSCRIPT,
)

SUBSETS = (
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
)


def subset_dir(root: Path, subset: str) -> Path:
    """``root`` may be the ``LibriSpeech`` folder, its parent, or the subset itself."""
    for candidate in (root / subset, root / "LibriSpeech" / subset, root):
        if candidate.is_dir() and candidate.name == subset:
            return candidate
    raise ConvertError(
        f"No LibriSpeech subset '{subset}' under {root}: expected {root / subset} "
        f"(unpack e.g. {subset}.tar.gz from https://www.openslr.org/12 and pass the "
        "`LibriSpeech` folder it creates)."
    )


def read_librispeech(
    root: Path, subset: str, report: ConversionReport
) -> list[ManifestRow]:
    """Every utterance of ``subset`` whose FLAC file exists, in sorted order;
    transcript lines without audio and audio without a transcript line are
    counted in ``report``."""
    directory = subset_dir(require_dir(root, "The LibriSpeech folder"), subset)

    transcripts = sorted(directory.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise ConvertError(
            f"{directory} holds no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt "
            "file; is it a LibriSpeech subset?"
        )

    entries = []
    listed: set[Path] = set()
    for trans in transcripts:
        for line_no, line in enumerate(
            trans.read_text(encoding="utf-8").splitlines(), start=1
        ):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not text.strip():
                report.skip(EMPTY_TRANSCRIPT, f"{trans}:{line_no} ({utt_id})")
                continue
            audio = trans.parent / f"{utt_id}.flac"
            listed.add(audio)
            if not audio.is_file():
                report.skip(MISSING_FILE, str(audio))
                continue
            entries.append(ManifestRow(utt_id, audio.resolve(), text, lang="en"))

    for audio in sorted(directory.glob("*/*/*.flac")):
        if audio not in listed:
            trans = (
                audio.parent
                / f"{audio.parent.parent.name}-{audio.parent.name}.trans.txt"
            )
            why = "does not list it" if trans.is_file() else "does not exist"
            report.skip(MISSING_TRANSCRIPT, f"{audio} ({trans.name} {why})")
    return entries


def convert_librispeech(root: Path, subset: str, out: Path) -> ConversionReport:
    report = ConversionReport(f"librispeech {subset}")
    return write_asr_manifest(
        report,
        read_librispeech(root, subset, report),
        out,
        nothing=f"No usable utterance in LibriSpeech {subset} under {root}.",
    )
