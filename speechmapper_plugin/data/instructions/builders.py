"""The three built-in stage-2 tasks, as builders of instruction examples.

- task-agnostic **ASR-based tuning**: transcription-style instructions drawn
  from a training pool (or the disjoint held-out pool for evaluation); the
  response is the transcript, as the corpus wrote it, and the example says so
  (``response_is_transcript``): stage 2 writes it with the one transcript
  policy of its MSE targets (``target_llm.transcript_normalization``), so the
  files need no rebuild when that policy changes;
- **speech translation**: the instruction names the target language;
- **spoken QA**: speech context plus a text question; the answer is the response.

Prompts are drawn with a seeded generator, so a rebuild gives the same file.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

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

    offset: float | None = None
    """Start (seconds) of the utterance in ``audio``, when it is a segment."""

    duration: float | None = None
    """Length (seconds) of the segment that starts at ``offset``."""


@dataclass(frozen=True)
class QuestionAnswer:
    """One spoken-QA item about a recording."""

    question: str
    answer: str
    """The reference: the answer text, or the correct option's letter."""

    options: tuple[str, ...] | None = None
    """Multiple choice: the options in the order of the letters A, B, ..."""

    answers: tuple[str, ...] | None = None
    """Every acceptable answer (extractive QA); ``answer`` is one of them."""

    id: str | None = None
    """The example id (e.g. the corpus's question id); by default ``<record>:sqa:<n>``."""


def _example(record: SpeechRecord, **fields: Any) -> InstructionExample:
    """An example about ``record``'s speech: its feature-store id, or its audio
    file (and segment)."""
    if record.audio is not None:
        return InstructionExample(
            audio=record.audio,
            offset=record.offset,
            duration=record.duration,
            **fields,
        )
    return InstructionExample(speech=record.id, **fields)


def build_asr_examples(
    records: Iterable[SpeechRecord],
    *,
    pool: Literal["train", "eval"] = "train",
    seed: int = 0,
) -> Iterator[InstructionExample]:
    """Transcription examples whose response is the transcript (marked so);
    records without a transcript are an error."""
    prompts = ASR_TRAIN_PROMPTS if pool == "train" else ASR_EVAL_PROMPTS
    rng = random.Random(seed)
    for record in records:
        if not record.transcript or not record.transcript.strip():
            raise ValueError(
                f"Utterance '{record.id}' has no transcript; ASR examples need one."
            )
        yield _example(
            record,
            id=f"{record.id}:asr",
            instruction=with_placeholder(rng.choice(prompts)),
            response=record.transcript.strip(),
            task="asr",
            lang=record.lang,
            transcript=record.transcript.strip(),
            response_is_transcript=True,
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
        yield _example(
            record,
            id=f"{record.id}:st:{target_lang}",
            instruction=with_placeholder(prompt),
            response=translation.strip(),
            task="st",
            lang=record.lang,
            target_lang=target_lang,
            transcript=record.transcript.strip() if record.transcript else None,
        )


def build_sqa_examples(
    records: Iterable[tuple[SpeechRecord, str, str]], *, seed: int = 0
) -> Iterator[InstructionExample]:
    """Spoken-QA examples from ``(record, question, answer)``; several questions
    about one recording get ids ``<id>:sqa:<n>``."""
    return build_qa_examples(
        (
            (record, QuestionAnswer(question, answer))
            for record, question, answer in records
        ),
        seed=seed,
    )


def build_qa_examples(
    items: Iterable[tuple[SpeechRecord, QuestionAnswer]], *, seed: int = 0
) -> Iterator[InstructionExample]:
    """Spoken-QA examples, keeping the question, options and acceptable answers
    apart from the prompt for scoring; the prompt lists the options as
    ``A. ...`` lines after the question."""
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for record, qa in items:
        if not qa.question.strip():
            raise ValueError(f"A question about '{record.id}' is empty.")
        n = counts.get(record.id, 0)
        counts[record.id] = n + 1
        shown = qa.question.strip()
        if qa.options:
            shown += "".join(
                f"\n{chr(ord('A') + i)}. {option}"
                for i, option in enumerate(qa.options)
            )
        instruction = rng.choice(SQA_PROMPTS).format(
            placeholder=SPEECH_PLACEHOLDER, question=shown
        )
        yield _example(
            record,
            id=qa.id if qa.id is not None else f"{record.id}:sqa:{n}",
            instruction=instruction,
            response=qa.answer.strip(),
            task="sqa",
            lang=record.lang,
            transcript=record.transcript.strip() if record.transcript else None,
            question=qa.question.strip(),
            options=qa.options,
            answers=qa.answers,
        )
