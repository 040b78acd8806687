"""The demo page's work, without Gradio: one audio file and a task in, the
answer out (with the segment table when the audio is longer than the
projector takes), and every input problem as a :class:`DemoInputError` whose
message the page shows as is.

The translation target is checked as the server checks ``target_language``
(:func:`~speechmapper_plugin.data.instructions.prompts.language_name`), and
the page offers the same languages (:data:`LANGUAGE_NAMES`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from torch import Tensor

from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.data.instructions.prompts import LANGUAGE_NAMES
from speechmapper_plugin.speech_llm import (
    AudioInputError,
    SpeechMapperPipeline,
    SpeechTooLongError,
    TimedSegment,
    run_long_form,
)
from speechmapper_plugin.speech_llm.audio_inputs import load_input

Task = Literal["transcribe", "translate", "question"]

TASKS: Final[dict[Task, str]] = {
    "transcribe": "Transcribe",
    "translate": "Translate",
    "question": "Ask a question",
}
"""The page's tasks and their labels."""


def language_choices() -> list[tuple[str, str]]:
    """The translation targets the page lists: ``("German (de)", "de")``, ...,
    the codes the server's ``target_language`` knows."""
    return sorted((f"{name} ({code})", code) for code, name in LANGUAGE_NAMES.items())


class DemoInputError(ValueError):
    """An input the demo cannot answer; the message says what to do."""


@dataclass(frozen=True)
class DemoAnswer:
    text: str
    segments: list[TimedSegment] = field(default_factory=list)
    """Empty when the audio was answered whole; else one row per segment
    (a segment the models cannot take, a short tail, has empty text)."""


def instruction_for(
    pipeline: SpeechMapperPipeline,
    task: str,
    language: str | None,
    question: str | None,
) -> str:
    """The pipeline's instruction for ``task`` (its :class:`TaskPrompts`).

    :raises DemoInputError: for an unknown task, a missing or unknown target
        language, or an empty question.
    """
    prompts = pipeline.prompts
    if task == "transcribe":
        return prompts.transcription()
    if task == "translate":
        if not language or not language.strip():
            raise DemoInputError(
                "Choose the language to translate into (a listed one, or type a code such as `de` or a language's English name)."
            )
        try:
            return prompts.translation(language)
        except ValueError as ex:
            raise DemoInputError(str(ex)) from None
    if task == "question":
        try:
            return prompts.question(question or "")
        except ValueError as ex:
            raise DemoInputError(
                f"{ex} Type a question about the audio, e.g. `What is the speaker talking about?`"
            ) from None
    raise DemoInputError(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")


def run_task(
    pipeline: SpeechMapperPipeline,
    audio: str | Path | None,
    task: str,
    *,
    language: str | None = None,
    question: str | None = None,
    segmenter: SegmenterConfig | None = None,
) -> Iterator[DemoAnswer]:
    """The answer to ``task`` on the audio file, as it grows (the last one
    yielded is the whole answer).

    Audio the models take whole is answered whole, streamed as it is
    generated (:meth:`SpeechMapperPipeline.stream`: the pieces join to
    ``pipeline.run``'s answer); longer audio goes through
    :func:`run_long_form` (cut by ``segmenter``, default fixed 30 s windows,
    lowered to what the projector and the LLM take) and comes whole, with
    its segments.

    :raises DemoInputError: for no audio, audio that cannot be decoded or is
        too short for the projector, and the errors of :func:`instruction_for`.
    """
    if audio is None or str(audio) == "":
        raise DemoInputError(
            "No audio: upload an audio file (WAV, FLAC, MP3, ...) or record one with the microphone, then press Run."
        )
    instruction = instruction_for(pipeline, task, language, question)
    try:
        waveform = load_input(audio, where="The audio")
    except AudioInputError as ex:
        raise DemoInputError(str(ex)) from None

    try:
        pipeline.check_audio(waveform.numel(), instruction, where="The audio")
    except SpeechTooLongError:
        pass  # long-form below
    except AudioInputError as ex:
        raise DemoInputError(f"{ex} Record or upload a longer clip.") from None
    else:
        yield from _streamed(pipeline, waveform, instruction)
        return

    try:
        long_form = run_long_form(pipeline, waveform, instruction, segmenter=segmenter)
    except (ValueError, AudioInputError) as ex:
        raise DemoInputError(str(ex)) from None
    yield DemoAnswer(long_form.text, list(long_form.segments))


def _streamed(
    pipeline: SpeechMapperPipeline, waveform: Tensor, instruction: str
) -> Iterator[DemoAnswer]:
    """The answer so far after each piece, then the whole answer (also when
    it is empty); the generation stops when the caller stops iterating."""
    text = ""
    with pipeline.stream(waveform, instruction) as stream:
        for piece in stream:
            text += piece
            yield DemoAnswer(text)
        result = stream.result
    yield DemoAnswer(text if result is None else result.text)
