"""EuroParl-ST v1.1 -> a segment manifest (ASR) and a speech-translation
instruction file.

Layout of the release (https://www.mllp.upv.es/europarl-st/; read the same
way by fairseq's and torchaudio-style ``EUROPARL`` loaders)::

    v1.1/<src>/audios/<audio-id>.m4a                  # whole speeches
    v1.1/<src>/<tgt>/<split>/segments.lst             # <audio-id> <start> <end>
    v1.1/<src>/<tgt>/<split>/segments.<src>           # source text, line-aligned
    v1.1/<src>/<tgt>/<split>/segments.<tgt>           # translation, line-aligned
    v1.1/<src>/<tgt>/<split>/speakers.lst, speeches.* # (not needed)

Start and end are seconds into the speech, so every example is a *segment
row* (``offset`` = start, ``duration`` = end - start). Splits: ``train``,
``dev``, ``test`` (also ``train-noisy``).

The audio is AAC in MPEG-4 (``.m4a``), which libsndfile cannot decode: convert
the speeches once (``ffmpeg -i x.m4a -ac 1 -ar 16000 x.flac``, the converter
prints the loop) and the converter uses ``x.flac`` (or ``.wav``) beside the
``.m4a`` -- or give ``audio_dir`` holding the converted files.

What the validation of the manifest would refuse is counted here instead of
written: a segment that starts at or after the end of its speech, or ends
after it (:func:`~speechmapper_plugin.data.row_audio.segment_bounds`, the
validation's own rule; each speech is decoded once for its length), and a
segment line that repeats an earlier one (the first is kept).

Whole-session mode (``whole_session``, ``--whole-session``): each speech is
one row (the whole audio file; source and translation are its usable
segments joined, in time order), as long-form evaluation reads it -- WER
over the whole recording from the manifest, and for translation the
segments beside the instruction file (``<instructions>.segments.jsonl``:
``id``, ``audio`` and ``segments``, each ``start``, ``end``, ``transcript``,
``translation``), onto which the scorer re-segments the hypothesis
(:mod:`speechmapper_plugin.evaluation.sessions`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.audio import AudioError, decode_audio
from speechmapper_plugin.data.convert.audio_files import (
    DECODABLE_SUFFIXES,
    find_audio,
    refuse_undecodable,
    require_dir,
    require_file,
)
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.convert.writing import (
    TranslationPair,
    convert_translation_corpus,
)
from speechmapper_plugin.data.instructions import SpeechRecord
from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.reasons import (
    BAD_SEGMENT,
    DUPLICATE_ID,
    EMPTY_TRANSCRIPT,
    MALFORMED_ROW,
    MISSING_FILE,
    UNDECODABLE_AUDIO,
    UNREADABLE_FILE,
)
from speechmapper_plugin.data.row_audio import segment_bounds

ORIGINAL_SUFFIX = ".m4a"
SEGMENTS_SUFFIX = ".segments.jsonl"
"""The whole-session segments file, beside the instruction file."""


def split_dir(root: Path, src: str, tgt: str, split: str) -> Path:
    """``root`` may be the release folder (holding ``<src>/``) or ``<src>/`` itself."""
    for base in (root / src, root):
        candidate = base / tgt / split
        if base.name == src and candidate.is_dir():
            return candidate
    raise ConvertError(
        f"No EuroParl-ST {src}->{tgt} '{split}' folder under {root}: expected "
        f"{root / src / tgt / split} (holding segments.lst, segments.{src}, segments.{tgt})."
    )


def read_europarl_st(
    root: Path,
    src: str,
    tgt: str,
    split: str,
    report: ConversionReport,
    *,
    audio_dir: Path | None = None,
) -> list[TranslationPair]:
    require_dir(root, "The EuroParl-ST folder")
    directory = split_dir(root, src, tgt, split)
    src_base = directory.parent.parent
    audio_dir = audio_dir or src_base / "audios"
    require_dir(audio_dir, "The EuroParl-ST audio folder")

    lst = require_file(directory / "segments.lst", "The segment list")
    sources = _lines(require_file(directory / f"segments.{src}", "The source text"))
    targets = _lines(require_file(directory / f"segments.{tgt}", "The translations"))
    segments = _lines(lst)
    if not len(segments) == len(sources) == len(targets):
        raise ConvertError(
            f"{directory}: segments.lst has {len(segments)} lines, segments.{src} "
            f"{len(sources)} and segments.{tgt} {len(targets)}; they must be line-aligned."
        )

    located: dict[str, Path | None] = {}
    lengths: dict[Path, tuple[int, int] | BadRow] = {}
    seen: dict[tuple[str, float, float], int] = {}
    undecodable: list[Path] = []
    out = []
    for line_no, (segment, source, target) in enumerate(
        zip(segments, sources, targets, strict=True), start=1
    ):
        where = f"{lst}:{line_no}"
        fields = segment.split()
        if len(fields) != 3:
            report.skip(MALFORMED_ROW, f"{where}: expected `<audio-id> <start> <end>`")
            continue
        audio_id, start_text, end_text = fields
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            report.skip(MALFORMED_ROW, f"{where}: start/end are not numbers")
            continue
        if start < 0 or end <= start:
            report.skip(BAD_SEGMENT, f"{where}: start {start} s, end {end} s")
            continue
        if not source.strip() or not target.strip():
            report.skip(EMPTY_TRANSCRIPT, f"{where}: empty source or translation")
            continue
        first = seen.setdefault((audio_id, start, end), line_no)
        if first != line_no:
            report.skip(DUPLICATE_ID, f"{where}: the same segment as line {first}")
            continue

        if audio_id not in located:
            path = find_audio(audio_dir, audio_id)
            if path is None:
                original = audio_dir / f"{audio_id}{ORIGINAL_SUFFIX}"
                if original.is_file():
                    undecodable.append(original)
            located[audio_id] = path
        audio = located[audio_id]
        if audio is None:
            report.skip(
                MISSING_FILE,
                f"{where}: no {audio_id}{{{','.join(DECODABLE_SUFFIXES)}}} in {audio_dir}",
            )
            continue

        record = SpeechRecord(
            id=f"{audio_id}_{start_text}_{end_text}",
            transcript=source.strip(),
            lang=src,
            audio=str(audio.resolve()),
            offset=start,
            duration=round(end - start, 6),
        )
        if audio not in lengths:
            lengths[audio] = _audio_length(audio)
        length = lengths[audio]
        if isinstance(length, BadRow):
            report.skip(length.reason, f"{where}: {length.detail}")
            continue
        row = ManifestRow(
            record.id,
            audio,
            source.strip(),
            offset=record.offset,
            duration=record.duration,
            line_no=line_no,
        )
        bounds = segment_bounds(row, *length)
        if isinstance(bounds, BadRow):
            report.skip(BAD_SEGMENT, f"{where}: {bounds.detail}")
            continue
        out.append(TranslationPair(record, target.strip()))

    refuse_undecodable(undecodable, corpus="EuroParl-ST")
    return out


def convert_europarl_st(
    root: Path,
    src: str,
    tgt: str,
    split: str,
    *,
    manifest: Path | None,
    instructions: Path | None,
    audio_dir: Path | None = None,
    seed: int = 0,
    whole_session: bool = False,
) -> ConversionReport:
    """Writes the segment manifest (source transcripts: ASR) and/or the ST
    instruction file (``response`` = translation, ``transcript`` = source);
    with ``whole_session``, one row per speech and the segments file (see
    the module docstring)."""

    def read(report: ConversionReport) -> tuple[str, str, list[TranslationPair]]:
        pairs = read_europarl_st(root, src, tgt, split, report, audio_dir=audio_dir)
        if not whole_session:
            return src, tgt, pairs
        sessions, segments = whole_sessions(pairs, src)
        if instructions is not None and sessions:
            path = segments_path(instructions)
            atomic_write_text(
                path,
                "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in segments),
            )
            report.outputs.append(path)
        return src, tgt, sessions

    return convert_translation_corpus(
        f"europarl_st {src}-{tgt} {split}{' whole sessions' if whole_session else ''}",
        read,
        nothing=f"No usable EuroParl-ST segment in {root} ({src}-{tgt} {split}).",
        manifest=manifest,
        instructions=instructions,
        seed=seed,
    )


def segments_path(instructions: Path) -> Path:
    """The whole-session segments file of an instruction file."""
    return instructions.with_suffix(SEGMENTS_SUFFIX)


def whole_sessions(
    pairs: Sequence[TranslationPair], src: str
) -> tuple[list[TranslationPair], list[dict[str, Any]]]:
    """One pair per speech (its segments joined in time order; the whole
    audio file, so no offset) and each speech's segments file line."""
    by_audio: dict[str, list[TranslationPair]] = {}
    for pair in pairs:
        by_audio.setdefault(str(pair.record.audio), []).append(pair)
    sessions, lines = [], []
    for audio, members in by_audio.items():
        members = sorted(members, key=lambda p: p.record.offset or 0.0)
        session_id = Path(audio).stem
        segments = [
            {
                "start": p.record.offset,
                "end": round((p.record.offset or 0.0) + (p.record.duration or 0.0), 6),
                # One line each: a U+2028 inside a sentence becomes a space.
                "transcript": " ".join(str(p.record.transcript).split()),
                "translation": " ".join(p.translation.split()),
            }
            for p in members
        ]
        record = SpeechRecord(
            id=session_id,
            transcript=" ".join(str(s["transcript"]) for s in segments),
            lang=src,
            audio=audio,
        )
        sessions.append(
            TranslationPair(record, " ".join(str(s["translation"]) for s in segments))
        )
        lines.append({"id": session_id, "audio": audio, "segments": segments})
    return sessions, lines


def read_segments(path: Path) -> list[dict[str, Any]]:
    """A whole-session segments file: ``id``, ``audio`` and ``segments`` of
    each session."""
    sessions: list[dict[str, Any]] = []
    for line_no, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            sessions.append(
                {
                    "id": str(data["id"]),
                    "audio": str(data["audio"]),
                    "segments": [
                        {
                            "start": float(s["start"]),
                            "end": float(s["end"]),
                            "transcript": str(s["transcript"]),
                            "translation": str(s["translation"]),
                        }
                        for s in data["segments"]
                    ],
                }
            )
        except (ValueError, KeyError, TypeError) as ex:
            raise ConvertError(
                f"{path}:{line_no}: not a whole-session segments line ({ex!r}); "
                'expected {"id", "audio", "segments": [{"start", "end", "transcript", '
                '"translation"}, ...]} as `--whole-session` writes it.'
            ) from None
    return sessions


def _audio_length(audio: Path) -> tuple[int, int] | BadRow:
    """``(frames, sample_rate)`` of a speech, or why it cannot be read."""
    try:
        decoded = decode_audio(audio)
    except OSError as ex:
        return BadRow(0, None, UNREADABLE_FILE, f"{audio}: {ex.strerror or ex}")
    except AudioError as ex:
        return BadRow(0, None, UNDECODABLE_AUDIO, str(ex))
    return decoded.waveform.size(0), decoded.sample_rate


def _lines(path: Path) -> list[str]:
    """Lines split at line feeds only (``str.splitlines`` would also split at
    U+2028 and other separators inside a sentence and break the alignment)."""
    lines = [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines
