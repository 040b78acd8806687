"""The three built-in stage-2 tasks, as builders of instruction examples.

- task-agnostic **ASR-based tuning**: transcription-style instructions drawn
  from a training pool (or the disjoint held-out pool for evaluation); the
  response is the transcript;
- **speech translation**: the instruction names the target language;
- **spoken QA**: speech context plus a text question; the answer is the response.

Prompts are drawn with a seeded generator, so a rebuild gives the same file.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from speechmapper_plugin.data.instructions.example import InstructionExample
from speechmapper_plugin.data.instructions.prompts import (
    ASR_EVAL_PROMPTS,
    ASR_TRAIN_PROMPTS,
    SPEECH_PLACEHOLDER,
    SQA_PROMPTS,
    ST_PROMPTS,
    language_name,
    with_placeholder,
)


@dataclass(frozen=True)
class SpeechRecord:
    """What a builder needs to know about one utterance."""

    id: str
    transcript: str | None = None
    lang: str | None = None
    audio: str | None = None
    """An audio path, for examples that do not come from a feature store."""


def _speech_fields(record: SpeechRecord) -> dict[str, str | None]:
    if record.audio is not None:
        return {"audio": record.audio, "speech": None}
    return {"speech": record.id, "audio": None}


def build_asr_examples(
    records: Iterable[SpeechRecord],
    *,
    pool: Literal["train", "eval"] = "train",
    seed: int = 0,
) -> Iterator[InstructionExample]:
    """Transcription examples; records without a transcript are an error."""
    prompts = ASR_TRAIN_PROMPTS if pool == "train" else ASR_EVAL_PROMPTS
    rng = random.Random(seed)
    for record in records:
        if not record.transcript or not record.transcript.strip():
            raise ValueError(
                f"Utterance '{record.id}' has no transcript; ASR examples need one."
            )
        yield InstructionExample(
            id=f"{record.id}:asr",
            instruction=with_placeholder(rng.choice(prompts)),
            response=record.transcript.strip(),
            task="asr",
            lang=record.lang,
            transcript=record.transcript.strip(),
            **_speech_fields(record),
        )


def build_st_examples(
    records: Iterable[tuple[SpeechRecord, str, str]], *, seed: int = 0
) -> Iterator[InstructionExample]:
    """Translation examples from ``(record, translation, target_lang)``."""
    rng = random.Random(seed)
    for record, translation, target_lang in records:
        if not translation.strip():
            raise ValueError(f"Utterance '{record.id}' has an empty translation.")
        prompt = rng.choice(ST_PROMPTS).format(language=language_name(target_lang))
        yield InstructionExample(
            id=f"{record.id}:st:{target_lang}",
            instruction=with_placeholder(prompt),
            response=translation.strip(),
            task="st",
            lang=record.lang,
            target_lang=target_lang,
            transcript=record.transcript.strip() if record.transcript else None,
            **_speech_fields(record),
        )


def build_sqa_examples(
    records: Iterable[tuple[SpeechRecord, str, str]], *, seed: int = 0
) -> Iterator[InstructionExample]:
    """Spoken-QA examples from ``(record, question, answer)``; several questions
    about one recording get ids ``<id>:sqa:<n>``."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for record, question, answer in records:
        if not question.strip():
            raise ValueError(f"A question about '{record.id}' is empty.")
        n = counts.get(record.id, 0)
        counts[record.id] = n + 1
        instruction = rng.choice(SQA_PROMPTS).format(
            placeholder=SPEECH_PLACEHOLDER, question=question.strip()
        )
        yield InstructionExample(
            id=f"{record.id}:sqa:{n}",
            instruction=instruction,
            response=answer.strip(),
            task="sqa",
            lang=record.lang,
            transcript=record.transcript.strip() if record.transcript else None,
            **_speech_fields(record),
        )
