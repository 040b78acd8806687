"""Which audio containers the decoder (libsndfile, via fairseq2's ``AudioDecoder``)
reads, and what to tell users about the ones it does not.

libsndfile >= 1.1 reads WAV, FLAC, Ogg/Vorbis, Opus and MP3 (Common Voice,
CoVoST 2). It has no AAC decoder, so MPEG-4 audio (EuroParl-ST's ``.m4a``) and
the other formats below must be converted once, e.g. with ffmpeg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

UNSUPPORTED_SUFFIXES: Final = frozenset({".m4a", ".mp4", ".aac", ".wma", ".webm"})
"""Extensions of containers/codecs libsndfile cannot decode."""


def is_unsupported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in UNSUPPORTED_SUFFIXES


def conversion_hint(path: str | Path) -> str:
    """How to turn ``path`` into 16 kHz mono FLAC, which the decoder reads."""
    source = Path(path)
    target = source.with_suffix(".flac")
    return (
        f"libsndfile cannot decode '{source.suffix}' (AAC/MPEG-4 and similar); "
        f"convert it once, e.g. `ffmpeg -i {source} -ac 1 -ar 16000 {target}` "
        "(Debian package: ffmpeg), and point the manifest at the .flac file."
    )
