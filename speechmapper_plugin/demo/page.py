"""The Gradio page of ``speechmapper demo``: audio (upload or microphone), a
task, a Run button, the answer and, for audio longer than the projector's
window, the segment table. The work is :func:`.tasks.run_task`; here it is
laid out, and its :class:`DemoInputError` shown as Gradio's error message
(never a traceback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Final

# No usage reports or version checks from an offline demo.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from speechmapper_plugin.audio.segments import SegmenterConfig  # noqa: E402
from speechmapper_plugin.demo.tasks import (  # noqa: E402
    TASKS,
    DemoAnswer,
    DemoInputError,
    language_choices,
    run_task,
)
from speechmapper_plugin.speech_llm import SpeechMapperPipeline  # noqa: E402

SEGMENT_HEADERS = ["start (s)", "end (s)", "text"]

HIDDEN: Final = "hidden"
"""Gradio's visibility for a field kept on the page but not shown: a field
never shown (``visible=False``) is not rendered, and Gradio 6.17 does not
show it after a run of the page's button (the question box stayed away
after a translation)."""

THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "Consolas", "monospace"],
)
"""Gradio's default look with the system's fonts: the page fetches nothing
from outside the machine it is served from."""


def answer_updates(
    pipeline: SpeechMapperPipeline,
    audio: str | None,
    task: str,
    language: str | None,
    question: str | None,
    segmenter: SegmenterConfig | None = None,
) -> Iterator[tuple[str, Any]]:
    """The Run button's handler: (answer text, segment table update) as the
    answer grows.

    :raises gr.Error: with the message of a :class:`DemoInputError`, or
        naming an unforeseen error (the page stays usable).
    """
    try:
        for answer in run_task(
            pipeline,
            audio,
            task,
            language=language,
            question=question,
            segmenter=segmenter,
        ):
            yield answer.text, _table(answer)
    except DemoInputError as ex:
        # The user's to fix: shown on the page, not logged as a server fault.
        raise gr.Error(str(ex), print_exception=False) from None
    except Exception as ex:  # never seen: shown, not a traceback
        raise gr.Error(f"Internal error: {type(ex).__name__}: {ex}") from ex


def _table(answer: DemoAnswer) -> Any:
    rows = [[round(s.start, 2), round(s.end, 2), s.text] for s in answer.segments]
    return gr.update(value=rows or None, visible=bool(rows))


def build_page(
    pipeline: SpeechMapperPipeline,
    *,
    model_name: str,
    segmenter: SegmenterConfig | None = None,
) -> gr.Blocks:
    """The page for ``pipeline`` (not launched)."""
    languages = language_choices()
    with gr.Blocks(title=f"SpeechMapper demo: {model_name}") as page:
        gr.Markdown(
            f"# SpeechMapper demo\n`{model_name}`: upload or record English speech, "
            "pick a task and press **Run**. Audio longer than the projector takes "
            "is cut into segments, answered one by one and listed below."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(
                    sources=["upload", "microphone"],
                    # Files as uploaded (no conversion, which needs ffmpeg): the
                    # pipeline's decoder reads WAV, FLAC, MP3 and says what not.
                    type="filepath",
                    label="Audio",
                    elem_id="audio",
                )
                task = gr.Radio(
                    choices=[(label, key) for key, label in TASKS.items()],
                    value="transcribe",
                    label="Task",
                    elem_id="task",
                )
                language = gr.Dropdown(
                    choices=languages,
                    value="de",
                    allow_custom_value=True,
                    label="Translate into",
                    info="A listed language, or a code or English name typed in",
                    visible=HIDDEN,
                    elem_id="language",
                )
                question = gr.Textbox(
                    label="Question about the audio",
                    placeholder="What is the speaker talking about?",
                    visible=HIDDEN,
                    elem_id="question",
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                answer = gr.Textbox(
                    label="Answer", lines=6, interactive=False, elem_id="answer"
                )
                segments = gr.Dataframe(
                    headers=SEGMENT_HEADERS,
                    datatype=["number", "number", "str"],
                    label="Segments (long audio)",
                    interactive=False,
                    visible=False,
                    wrap=True,
                    elem_id="segments",
                )

        def show_fields(chosen: str) -> tuple[Any, Any]:
            return (
                gr.update(visible=True if chosen == "translate" else HIDDEN),
                gr.update(visible=True if chosen == "question" else HIDDEN),
            )

        task.change(show_fields, [task], [language, question])

        def handle(
            audio: str | None, task: str, language: str | None, question: str | None
        ) -> Iterator[tuple[str, Any]]:
            yield from answer_updates(
                pipeline, audio, task, language, question, segmenter
            )

        run.click(handle, [audio, task, language, question], [answer, segments])
    return page
