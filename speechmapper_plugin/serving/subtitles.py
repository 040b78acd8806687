"""SubRip (``srt``) and WebVTT (``vtt``) text from timed segments: the
``response_format`` values of OpenAI's transcription API for long audio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Timed(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def text(self) -> str: ...


def timestamp(seconds: float, *, decimal: str) -> str:
    """``HH:MM:SS<decimal>mmm`` (SRT uses ``,``, WebVTT ``.``)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def to_srt(segments: Sequence[Timed]) -> str:
    """Numbered cues from 1, a blank line after each; empty segments left out."""
    cues = [s for s in segments if s.text.strip()]
    return "".join(
        f"{i}\n{timestamp(s.start, decimal=',')} --> {timestamp(s.end, decimal=',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(cues, start=1)
    )


def to_vtt(segments: Sequence[Timed]) -> str:
    """``WEBVTT`` and a blank line, then a cue per non-empty segment."""
    cues = [s for s in segments if s.text.strip()]
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(s.start, decimal='.')} --> {timestamp(s.end, decimal='.')}\n{s.text.strip()}\n\n"
        for s in cues
    )
