"""Manifest field names and the conversion of one raw row into a :class:`ManifestRow`.

Column names (TSV header) and keys (JSONL) are matched case-insensitively.
When several names of one field are present, the first in the lists below wins.
The lists cover fairseq2's wav2vec2 manifests (``audio``, ``audio_size``),
omnilingual-asr manifests (``audio_path``, ``text``, ``duration``, ``lang``),
NeMo manifests (``audio_filepath``, ``duration``, ``offset``, ``text``) and
Common Voice (``path``, ``sentence``, ``locale``).

``offset`` (seconds) makes a row a segment of its file, ``duration`` then being
the segment's length (NeMo's convention); a negative offset or duration there
is a ``bad_segment``, not a malformed row, so reports group it with segments
that overrun their file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Final

from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.reasons import BAD_SEGMENT, MALFORMED_ROW

FIELD_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "id": ("id", "utt_id", "utterance_id", "uttid", "key", "segment_id"),
    "audio": (
        "audio",
        "audio_path",
        "audio_filepath",
        "audio_file",
        "path",
        "file",
        "file_name",
        "filename",
        "wav",
    ),
    "num_samples": ("num_samples", "audio_size", "n_samples", "samples"),
    "duration": ("duration", "duration_s", "audio_duration", "seconds"),
    "offset": ("offset", "offset_s", "audio_offset", "start", "start_time"),
    "transcript": (
        "transcript",
        "text",
        "transcription",
        "sentence",
        "raw_text",
        "normalized_text",
        "wrd",
        "words",
    ),
    "lang": ("lang", "language", "locale", "lang_code", "src_lang"),
}
"""Field -> accepted names, by priority."""

REQUIRED_FIELDS: Final = ("audio", "transcript")


def match_fields(names: list[str]) -> dict[str, int]:
    """Field -> index of the column that provides it (highest-priority alias)."""
    lowered = [n.strip().lower() for n in names]

    matched: dict[str, int] = {}

    for field_name, aliases in FIELD_ALIASES.items():
        for alias in aliases:
            if alias in lowered:
                matched[field_name] = lowered.index(alias)
                break

    return matched


def accepted_names(field_name: str) -> str:
    return ", ".join(f"`{a}`" for a in FIELD_ALIASES[field_name])


class _RowError(Exception):
    pass


def build_row(
    values: Mapping[str, object],
    *,
    line_no: int,
    root: Path,
    has_id_field: bool,
) -> ManifestRow | BadRow:
    """Validate and convert the raw values of one row (field name -> value).

    A missing ``id`` field (``has_id_field=False``) derives the id from the
    audio path without its extension; a present but empty one is an error.
    """
    row_id: str | None = None

    try:
        if has_id_field:
            row_id = _required_str(values, "id")
        audio = _required_str(values, "audio")
        if row_id is None:
            row_id = str(PurePosixPath(audio.replace("\\", "/")).with_suffix(""))
        transcript = _transcript(values)
        num_samples = _optional_int(values, "num_samples")
        offset = _optional_float(values, "offset", allow_negative=True)
        duration = _optional_float(
            values, "duration", allow_negative=offset is not None
        )
        lang = _optional_str(values, "lang")
    except _RowError as ex:
        return BadRow(line_no, row_id, MALFORMED_ROW, str(ex))

    if offset is not None and (offset < 0 or (duration is not None and duration < 0)):
        return BadRow(
            line_no,
            row_id,
            BAD_SEGMENT,
            f"the segment has a negative offset or duration (offset {offset} s, duration {duration} s)",
        )

    audio_path = Path(audio).expanduser()
    if not audio_path.is_absolute():
        audio_path = root / audio_path

    return ManifestRow(
        id=row_id,
        audio=audio_path,
        transcript=transcript,
        num_samples=num_samples,
        duration=duration,
        lang=lang,
        line_no=line_no,
        offset=offset,
    )


def _required_str(values: Mapping[str, object], name: str) -> str:
    if name not in values or values[name] is None:
        raise _RowError(
            f"missing field `{name}` (accepted names: {accepted_names(name)})"
        )

    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _RowError(f"`{name}` must be a string, but is {type(value).__name__}")

    text = str(value).strip()
    if not text:
        raise _RowError(f"`{name}` is empty")

    return text


def _transcript(values: Mapping[str, object]) -> str:
    if "transcript" not in values or values["transcript"] is None:
        raise _RowError(
            f"missing field `transcript` (accepted names: {accepted_names('transcript')})"
        )

    value = values["transcript"]
    if not isinstance(value, str):
        raise _RowError(f"`transcript` must be a string, but is {type(value).__name__}")

    return value.strip()


def _optional_str(values: Mapping[str, object], name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None

    if not isinstance(value, str):
        raise _RowError(f"`{name}` must be a string, but is {type(value).__name__}")

    return value.strip() or None


def _optional_int(values: Mapping[str, object], name: str) -> int | None:
    value = values.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None

    number: float | int
    if isinstance(value, bool):
        raise _RowError(f"`{name}` must be a whole number, but is {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise _RowError(
                f"`{name}` must be a whole number, but is {value!r}"
            ) from None
    else:
        raise _RowError(
            f"`{name}` must be a whole number, but is {type(value).__name__}"
        )

    if isinstance(number, float):
        if not math.isfinite(number) or number != int(number):
            raise _RowError(f"`{name}` must be a whole number, but is {value!r}")
        number = int(number)

    if number < 0:
        raise _RowError(f"`{name}` must not be negative, but is {number}")

    return number


def _optional_float(
    values: Mapping[str, object], name: str, *, allow_negative: bool = False
) -> float | None:
    value = values.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _RowError(f"`{name}` must be a number of seconds, but is {value!r}")

    try:
        number = float(value)
    except ValueError:
        raise _RowError(
            f"`{name}` must be a number of seconds, but is {value!r}"
        ) from None

    if not math.isfinite(number):
        raise _RowError(
            f"`{name}` must be a finite number of seconds, but is {value!r}"
        )

    if number < 0 and not allow_negative:
        raise _RowError(
            f"`{name}` must be a finite, non-negative number of seconds, but is {value!r}"
        )

    return number
