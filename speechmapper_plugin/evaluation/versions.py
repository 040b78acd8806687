"""Versions of the packages a score depends on, recorded next to the score."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``; ``None`` if absent."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def metric_versions() -> dict[str, str | None]:
    """Every scoring package whose version can change a number in a summary."""
    return {
        name: package_version(name)
        for name in ("jiwer", "sacrebleu", "whisper-normalizer", "py3langid")
    }
