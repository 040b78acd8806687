"""Language codes: one spelling (ISO 639-1 where there is one) for comparisons."""

from __future__ import annotations

import re

from speechmapper_plugin.data.instructions.prompts import LANGUAGE_NAMES

_BY_NAME = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}

_ISO_639_3 = {
    "ara": "ar", "cat": "ca", "ces": "cs", "cmn": "zh", "dan": "da", "deu": "de",
    "ell": "el", "eng": "en", "spa": "es", "est": "et", "fas": "fa", "fin": "fi",
    "fra": "fr", "hin": "hi", "hun": "hu", "ind": "id", "ita": "it", "jpn": "ja",
    "kor": "ko", "lav": "lv", "nld": "nl", "pol": "pl", "por": "pt", "ron": "ro",
    "rus": "ru", "slk": "sk", "slv": "sl", "swe": "sv", "tur": "tr", "ukr": "uk",
    "zho": "zh",
}  # fmt: skip
"""The three-letter codes of FLEURS/SeamlessM4T for the languages of ``LANGUAGE_NAMES``."""


def language_code(lang: str) -> str:
    """``"de"``, ``"de-DE"``, ``"en_us"``, ``"deu"`` or ``"German"`` -> ``"de"``.

    Unknown codes come back lower-cased and without their region, so two
    spellings of one code still compare equal.
    """
    key = lang.strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    base = re.split(r"[-_]", key, maxsplit=1)[0]
    return _ISO_639_3.get(base, base)
