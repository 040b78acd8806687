"""The EET's text set: a text file (one sentence per line) or a manifest's transcripts."""

from __future__ import annotations

from pathlib import Path

from speechmapper_plugin.data.manifest_reader import read_manifest


def read_eet_sentences(
    *,
    text_file: Path | None = None,
    manifest: Path | None = None,
    max_sentences: int | None = None,
) -> list[str]:
    """The sentences, in file order (blank lines and empty transcripts are
    kept, so that :func:`run_eet` counts them as skipped).

    :raises ValueError: Unless exactly one source is given and readable.
    """
    if (text_file is None) == (manifest is None):
        raise ValueError(
            "Give exactly one of a text file (one sentence per line) and a manifest (its transcripts)."
        )

    if text_file is not None:
        try:
            sentences = text_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as ex:
            raise ValueError(f"Cannot read the text file {text_file}: {ex}") from None
    else:
        assert manifest is not None
        sentences = [row.transcript for row in read_manifest(manifest).rows]

    if max_sentences is not None:
        sentences = sentences[:max_sentences]

    if not any(s.strip() for s in sentences):
        raise ValueError(
            f"{text_file or manifest} holds no sentence to measure the EET on."
        )

    return sentences
