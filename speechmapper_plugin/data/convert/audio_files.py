"""Finding a corpus's audio files and refusing formats the decoder cannot read
before anything is written (never deep in an extraction or evaluation run)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from speechmapper_plugin.audio.formats import UNSUPPORTED_SUFFIXES, conversion_hint
from speechmapper_plugin.data.convert.report import ConvertError

DECODABLE_SUFFIXES = (".flac", ".wav", ".ogg", ".opus", ".mp3")
"""Preferred when a converted copy sits beside the original (e.g. ``x.flac``
next to EuroParl-ST's ``x.m4a``)."""


def find_audio(
    directory: Path, stem: str, suffixes: Sequence[str] = DECODABLE_SUFFIXES
) -> Path | None:
    """``directory/stem<suffix>`` for the first suffix that exists."""
    for suffix in suffixes:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def refuse_undecodable(paths: Iterable[Path], *, corpus: str) -> None:
    """:raises ConvertError: if any path is in a format libsndfile cannot
    decode, with the command that converts them all."""
    bad = sorted({p for p in paths if p.suffix.lower() in UNSUPPORTED_SUFFIXES})
    if not bad:
        return
    suffix = bad[0].suffix
    folder = bad[0].parent
    raise ConvertError(
        f"{len(bad)} {corpus} audio file(s) are '{suffix}', e.g. {bad[0]}. "
        f"{conversion_hint(bad[0])} For the whole folder: "
        f'`for f in {folder}/*{suffix}; do ffmpeg -nostdin -v error -i "$f" -ac 1 -ar 16000 "${{f%{suffix}}}.flac"; done`; '
        "then run this converter again: it uses the .flac files."
    )


def require_dir(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_dir():
        raise ConvertError(
            f"{what} {path} does not exist or is not a directory.{' ' + hint if hint else ''}"
        )
    return path


def require_file(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_file():
        raise ConvertError(f"{what} {path} does not exist.{' ' + hint if hint else ''}")
    return path
