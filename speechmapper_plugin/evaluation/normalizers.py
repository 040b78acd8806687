"""Text normalisation before WER/CER: Whisper's normalisers, as the IWSLT
instruction-following track (MCIF) and the Open ASR leaderboard apply them.

English references and hypotheses go through ``EnglishTextNormalizer``
(spelling, numbers, contractions, punctuation, casing); every other language
through ``BasicTextNormalizer`` (casing, punctuation, bracketed text). The
normaliser's name and the package version go into every summary, since a
different normaliser changes WER by more than most model differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from speechmapper_plugin.data.instructions.prompts import language_code
from speechmapper_plugin.evaluation.versions import package_version

ENGLISH_NORMALIZER = "whisper_normalizer.english.EnglishTextNormalizer"
BASIC_NORMALIZER = "whisper_normalizer.basic.BasicTextNormalizer"


@dataclass(frozen=True)
class TextNormalizer:
    name: str
    """The normaliser's import path, recorded in summaries."""

    version: str | None
    """The version of the ``whisper-normalizer`` package."""

    apply: Callable[[str], str]

    def __call__(self, text: str) -> str:
        # Whisper's normalisers leave stray spaces where they removed text.
        return " ".join(self.apply(text).split())


@cache
def _english() -> TextNormalizer:
    return TextNormalizer(
        ENGLISH_NORMALIZER,
        package_version("whisper-normalizer"),
        EnglishTextNormalizer(),
    )


@cache
def _basic() -> TextNormalizer:
    return TextNormalizer(
        BASIC_NORMALIZER, package_version("whisper-normalizer"), BasicTextNormalizer()
    )


def normalizer_for(lang: str) -> TextNormalizer:
    """Whisper's English normaliser for English, its basic one otherwise."""
    return _english() if language_code(lang) == "en" else _basic()
