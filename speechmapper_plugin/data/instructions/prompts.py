"""Instruction pools for stage-2 tuning and evaluation.

Every user turn holds the placeholder :data:`SPEECH_PLACEHOLDER` where the
speech embeddings go. The transcription pools for training and evaluation are
disjoint, so evaluation measures generalisation to unseen wordings (the point
of SpeechMapper's task-agnostic tuning).
"""

from __future__ import annotations

import re
from typing import Final

from speechmapper_plugin.llm.chat_template import (
    SPEECH_PLACEHOLDER as SPEECH_PLACEHOLDER,
)

ASR_TRAIN_PROMPTS: Final = (
    "Transcribe the audio.",
    "Repeat exactly what the speaker said.",
    "Write down what is said in this recording.",
    "What does the speaker say? Answer with the exact words.",
    "Convert this speech to text.",
    "Give a verbatim transcript of the audio.",
    "Listen and write the spoken words.",
    "Provide the transcription of this speech.",
    "Type out the words you hear.",
    "Produce the text of this utterance.",
)

ASR_EVAL_PROMPTS: Final = (
    "Please transcribe this recording word for word.",
    "What exactly is being said here?",
    "Turn the following speech into written text.",
    "Dictation: write everything the speaker says.",
    "Report the speaker's words without changing them.",
)

ST_PROMPTS: Final = (
    "Translate the audio into {language}.",
    "What does the speaker say? Answer in {language}.",
    "Give a {language} translation of this speech.",
    "Listen and translate what is said into {language}.",
)

SQA_PROMPTS: Final = (
    "Listen to the audio and answer the question.\n{placeholder}\nQuestion: {question}",
    "{placeholder}\nBased on the recording, {question}",
    "Answer the question about this audio.\nAudio: {placeholder}\nQuestion: {question}",
)

LANGUAGE_NAMES: Final = {
    "ar": "Arabic",
    "ca": "Catalan",
    "cs": "Czech",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "lv": "Latvian",
    "mn": "Mongolian",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sv": "Swedish",
    "ta": "Tamil",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}
"""English names by ISO 639-1 code: the languages of CoVoST 2, Europarl-ST
and FLEURS' usual translation directions."""

ISO_639_3: Final = {
    "ara": "ar", "cat": "ca", "ces": "cs", "cmn": "zh", "cym": "cy", "dan": "da",
    "deu": "de", "ell": "el", "eng": "en", "spa": "es", "est": "et", "fas": "fa",
    "fin": "fi", "fra": "fr", "hin": "hi", "hun": "hu", "ind": "id", "ita": "it",
    "jpn": "ja", "kor": "ko", "lav": "lv", "mon": "mn", "nld": "nl", "pol": "pl",
    "por": "pt", "ron": "ro", "rus": "ru", "slk": "sk", "slv": "sl", "swe": "sv",
    "tam": "ta", "tur": "tr", "ukr": "uk", "zho": "zh",
}  # fmt: skip
"""The three-letter codes of FLEURS/SeamlessM4T for the languages of
:data:`LANGUAGE_NAMES`."""

_BY_NAME: Final = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}

_CODE = re.compile(r"[a-z]{2,3}(?:[-_][a-z0-9]+)*", re.IGNORECASE)
"""What a code looks like: ``de``, ``deu``, ``zh-CN``, ``en_us``."""


def language_code(lang: str) -> str:
    """``"de"``, ``"de-DE"``, ``"en_us"``, ``"deu"`` or ``"German"`` -> ``"de"``:
    one spelling for comparisons.

    Unknown codes come back lower-cased and without their region, so two
    spellings of one code still compare equal.
    """
    key = lang.strip().lower()
    if key in _BY_NAME:
        return _BY_NAME[key]
    base = re.split(r"[-_]", key, maxsplit=1)[0]
    return ISO_639_3.get(base, base)


def language_name(code_or_name: str) -> str:
    """The English name to put in an instruction for a target language.

    A code (two or three letters, optionally with a region: ``"de"``,
    ``"deu"``, ``"zh-CN"``) must be one of :data:`LANGUAGE_NAMES`; anything
    longer is taken as a language's name, as given (``"Swahili"``), so any
    language can still be asked for by name.

    :raises ValueError: for an empty string, or a code of no known language
        (the message lists the known codes).
    """
    key = code_or_name.strip()
    if not key:
        raise ValueError(
            "A target language must be given (a code such as 'de' or a name)."
        )

    code = language_code(key)
    if code in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[code]

    if _CODE.fullmatch(key):
        raise ValueError(
            f"Unknown target language code '{key}'. Known codes: {', '.join(LANGUAGE_NAMES)}; or give the language's English name (e.g. 'Swahili')."
        )

    return key[0].upper() + key[1:]


def with_placeholder(prompt: str) -> str:
    """The user turn for a prompt that names no position for the speech."""
    return f"{prompt}\n{SPEECH_PLACEHOLDER}"
