"""Instruction pools for stage-2 tuning and evaluation.

Every user turn holds the placeholder :data:`SPEECH_PLACEHOLDER` where the
speech embeddings go. The transcription pools for training and evaluation are
disjoint, so evaluation measures generalisation to unseen wordings (the point
of SpeechMapper's task-agnostic tuning).
"""

from __future__ import annotations

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
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}


def language_name(code_or_name: str) -> str:
    """An ISO 639-1 code (``"de"``) or a language name to an English name."""
    key = code_or_name.strip()
    if key.lower() in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[key.lower()]
    if not key:
        raise ValueError(
            "A target language must be given (a code such as 'de' or a name)."
        )
    return key[0].upper() + key[1:]


def with_placeholder(prompt: str) -> str:
    """The user turn for a prompt that names no position for the speech."""
    return f"{prompt}\n{SPEECH_PLACEHOLDER}"
