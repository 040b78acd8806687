"""``speechmapper demo``'s work on the tiny models, without a browser: each
task's answer equals :class:`SpeechMapperPipeline`'s own for the same file
(a second pipeline, loaded separately, is the reference), long audio gives
the segment table of hand-cut windows, and every bad input is a message the
page shows (``gr.Error``), never a traceback. The page in a real browser is
``test_demo_browser.py``."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.data.instructions.prompts import LANGUAGE_NAMES
from speechmapper_plugin.demo import DemoAnswer, DemoInputError, run_task
from speechmapper_plugin.demo.page import answer_updates, build_page
from speechmapper_plugin.demo.tasks import language_choices
from speechmapper_plugin.speech_llm import SpeechMapperPipeline
from tests.support.audio import tone, write_corrupt, write_too_short, write_wav
from tests.support.serving import (
    long_recording,
    reference_pipeline,
    window_results,
)


@pytest.fixture(scope="module")
def demo() -> SpeechMapperPipeline:
    """The pipeline the page runs."""
    return reference_pipeline()


@pytest.fixture(scope="module")
def reference() -> SpeechMapperPipeline:
    return reference_pipeline()


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    return write_wav(root / "a.wav", tone(1.6, freq=180.0, seed=3))


def answer(
    demo: SpeechMapperPipeline, audio: object, task: str, **kw: object
) -> DemoAnswer:
    *_, last = run_task(demo, audio, task, **kw)  # type: ignore[arg-type]
    return last


def test_each_task_answers_as_the_pipeline(
    demo: SpeechMapperPipeline, reference: SpeechMapperPipeline, wav: Path
) -> None:
    # Streamed: the page sees the answer grow, and it ends as the pipeline's.
    transcript = reference.transcribe(wav)
    answers = list(run_task(demo, str(wav), "transcribe"))
    assert answers[-1] == DemoAnswer(transcript)
    assert all(transcript.startswith(a.text) and not a.segments for a in answers)
    assert len({a.text for a in answers}) >= 3, answers
    qa = answer(demo, str(wav), "question", question="Who is speaking?")
    assert qa == DemoAnswer(reference.answer(wav, "Who is speaking?"))

    # Through the page's handler: the same text, and no segment table.
    *_, (text, table) = answer_updates(demo, str(wav), "translate", "fr", None)
    assert text == reference.translate(wav, "fr")
    assert table["visible"] is False


def test_the_listed_languages_are_the_servers() -> None:
    """The dropdown lists every code the server's `target_language` knows."""
    choices = language_choices()
    assert sorted(code for _, code in choices) == sorted(LANGUAGE_NAMES)
    assert ("German (de)", "de") in choices


def test_long_audio_gives_the_segment_table(
    demo: SpeechMapperPipeline, reference: SpeechMapperPipeline, tmp_path: Path
) -> None:
    """34 s is more than the tiny LLM's context takes whole (32.8 s): 15 s
    windows, each answered as the reference answers the hand-cut window."""
    path = tmp_path / "long.wav"
    waveform = long_recording(path, reference, seconds=17.0, freqs=[150.0, 260.0])
    instruction = reference.prompts.transcription()
    expected = [r.text for r in window_results(reference, waveform, instruction)]
    segmenter = SegmenterConfig(kind="fixed", max_seconds=15.0)
    *_, (text, table) = answer_updates(
        demo, str(path), "transcribe", None, None, segmenter
    )
    assert table["visible"] is True
    assert table["value"] == [
        [0.0, 15.0, expected[0]],
        [15.0, 30.0, expected[1]],
        [30.0, 34.0, expected[2]],
    ]
    assert text == " ".join(t for t in expected if t)


def _bad_inputs(tmp_path: Path, wav: Path) -> list[tuple[dict[str, object], str]]:
    return [
        (dict(audio=None, task="transcribe"), "No audio: upload an audio file"),
        (dict(audio="", task="transcribe"), "No audio"),
        (
            dict(audio=str(write_too_short(tmp_path / "short.wav")), task="transcribe"),
            "longer clip",
        ),
        (
            dict(audio=str(write_corrupt(tmp_path / "bad.wav")), task="transcribe"),
            "The audio",
        ),
        (
            dict(audio=str(wav), task="translate", language="xx"),
            "Unknown target language code 'xx'",
        ),
        (dict(audio=str(wav), task="translate", language=" "), "Choose the language"),
        (dict(audio=str(wav), task="question", question="  "), "Type a question"),
        (dict(audio=str(wav), task="summarise"), "Unknown task 'summarise'"),
    ]


def test_bad_inputs_are_messages_on_the_page(
    demo: SpeechMapperPipeline, wav: Path, tmp_path: Path
) -> None:
    for inputs, message in _bad_inputs(tmp_path, wav):
        with pytest.raises(DemoInputError, match=message):
            answer(demo, **inputs)  # type: ignore[arg-type]
        # The page shows it as Gradio's error message, not a traceback.
        with pytest.raises(gr.Error, match=message) as raised:
            list(
                answer_updates(
                    demo,
                    inputs["audio"],  # type: ignore[arg-type]
                    str(inputs["task"]),
                    inputs.get("language"),  # type: ignore[arg-type]
                    inputs.get("question"),  # type: ignore[arg-type]
                )
            )
        assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_page_has_the_controls_the_browser_test_uses(
    demo: SpeechMapperPipeline,
) -> None:
    page = build_page(demo, model_name="tiny")
    ids = {
        block.elem_id
        for block in page.blocks.values()
        if getattr(block, "elem_id", None)
    }
    assert {"audio", "task", "language", "question", "run", "answer", "segments"} <= ids


def test_demo_and_serve_read_the_model_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``speechmapper demo`` takes ``speechmapper serve``'s model arguments,
    with the same help, and loads what serve would (here written out by hand);
    each keeps its own port."""
    from dataclasses import replace

    from speechmapper_plugin.demo.__main__ import build_parser as demo_parser
    from speechmapper_plugin.serving.__main__ import build_parser as serve_parser
    from speechmapper_plugin.serving.options import ServeOptions

    monkeypatch.delenv("SPEECHMAPPER_API_KEY", raising=False)
    cards = tmp_path / "cards"
    argv = [
        str(tmp_path),
        "--llm=some_llm",
        "--speech-encoder=some_sfm",
        f"--asset-dir={cards}",
        "--host=0.0.0.0",
        "--device=cpu",
        "--dtype=bfloat16",
        "--max-new-tokens=7",
        "--segmenter=vad",
        "--segment-seconds=12",
        "--vad-threshold=0.3",
        "--vad-pad-ms=30",
        "--vad-pad-end-ms=300",
    ]
    expected = ServeOptions(
        projector=str(tmp_path.resolve()),
        asset_dirs=(str(cards.resolve()),),
        llm="some_llm",
        speech_encoder="some_sfm",
        device="cpu",
        dtype="bfloat16",
        max_new_tokens=7,
        segmenter=SegmenterConfig(
            kind="vad",
            max_seconds=12.0,
            vad_threshold=0.3,
            speech_pad_ms=30,
            speech_pad_end_ms=300,
        ),
    )
    demo_args = demo_parser().parse_args(argv)
    serve_args = serve_parser().parse_args([*argv, "--max-batch-size=3"])
    assert ServeOptions.model_options(demo_args) == expected
    assert ServeOptions.from_args(serve_args) == replace(expected, max_batch_size=3)
    assert (demo_args.host, demo_args.port, serve_args.port) == ("0.0.0.0", 7860, 8000)

    def helps(parser: object) -> dict[str, str | None]:
        return {
            a.dest: a.help
            for a in parser._actions  # type: ignore[attr-defined]
            if a.dest != "max_new_tokens"  # serve's says a request may lower it
        }

    demo_help, serve_help = helps(demo_parser()), helps(serve_parser())
    assert {d: serve_help[d] for d in demo_help} == demo_help
