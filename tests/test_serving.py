"""The serving engine and HTTP API in-process (the app under Starlette's test
client): answers equal :class:`SpeechMapperPipeline`'s for the same input
alone (a second pipeline, loaded separately, is the reference), batching
really batches, and every kind of bad request gets OpenAI's error shape and
status without disturbing the good ones. The ``openai`` client against a
real server process is ``test_serving_openai.py``."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.serving import (
    AudioLimits,
    Sampling,
    SpeechEngine,
    SpeechRequest,
    create_app,
)
from speechmapper_plugin.speech_llm import PipelineResult, SpeechMapperPipeline
from tests.support.audio import tone, write_corrupt, write_too_short, write_wav
from tests.support.serving import long_recording, window_results

MODEL = "served"
KEY = "test-key"


def _pipeline(
    prompt_cache_size: int = 4096,
    kind: type[SpeechMapperPipeline] = SpeechMapperPipeline,
) -> SpeechMapperPipeline:
    """The tiny models (``kind``: a pipeline that fails on purpose)."""
    return kind.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GenerationConfig(max_new_tokens=8),
        prompt_cache_size=prompt_cache_size,
    )


def _engine(pipeline: SpeechMapperPipeline) -> SpeechEngine:
    """Batches of up to 4 requests that wait 300 ms for each other."""
    return SpeechEngine(pipeline, model_id=MODEL, max_batch_size=4, max_wait_ms=300.0)


@pytest.fixture(scope="module")
def reference() -> SpeechMapperPipeline:
    return _pipeline()


@pytest.fixture(scope="module")
def engine() -> Iterator[SpeechEngine]:
    engine = _engine(_pipeline())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine: SpeechEngine) -> Iterator[TestClient]:
    app = create_app(
        engine, api_key=KEY, limits=AudioLimits(max_bytes=200_000, max_seconds=4.0)
    )
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("serving_audio")
    return [
        write_wav(root / f"a{i}.wav", tone(seconds, freq=freq, seed=i))
        for i, (seconds, freq) in enumerate(
            [(1.2, 180.0), (2.5, 240.0), (0.9, 300.0), (1.7, 140.0)]
        )
    ]


def assert_same(actual: PipelineResult, expected: PipelineResult) -> None:
    assert actual.token_ids == expected.token_ids
    assert actual.text == expected.text
    torch.testing.assert_close(
        torch.tensor(actual.generation.best.token_log_probs),
        torch.tensor(expected.generation.best.token_log_probs),
        atol=1e-4,
        rtol=0,
    )


INSTRUCTIONS = [
    "Transcribe the audio.\n<speech>",
    "Repeat what was said.\n<speech>",
    "<speech>\nWrite down what you hear.",
    "Transcribe the audio.\n<speech>",
]


def test_concurrent_requests_share_a_batch_and_equal_the_pipeline_alone(
    engine: SpeechEngine, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    before = engine.stats.batches
    futures = [
        engine.submit(SpeechRequest(load_audio(wav), instruction))
        for wav, instruction in zip(wavs, INSTRUCTIONS, strict=True)
    ]
    results = [future.result(timeout=60) for future in futures]

    # All four arrived within the wait: one forward batch.
    assert engine.stats.batches == before + 1
    assert engine.stats.largest_batch == 4
    for wav, instruction, result in zip(wavs, INSTRUCTIONS, results, strict=True):
        (alone,) = reference.run(wav, instruction)
        assert_same(result, alone)
    # Control: the answers differ between inputs (a mix-up would be seen).
    assert (
        results[0].generation.best.token_log_probs
        != results[1].generation.best.token_log_probs
    )


def test_seeded_sampling_runs_alone_and_repeats(
    engine: SpeechEngine, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    sampling = Sampling(temperature=1.5, top_p=1.0, seed=7)
    request = SpeechRequest(load_audio(wavs[1]), INSTRUCTIONS[0], sampling=sampling)
    first, second = engine.submit(request), engine.submit(request)
    a, b = first.result(timeout=60), second.result(timeout=60)

    config = sampling.apply(reference.generation)
    assert config.generator == "sampling" and config.temperature == 1.5
    saved = reference.generation
    reference.generation = config
    try:
        torch.manual_seed(7)
        (expected,) = reference.run(wavs[1], INSTRUCTIONS[0])
    finally:
        reference.generation = saved
    assert a.token_ids == b.token_ids == expected.token_ids


def test_streamed_requests_in_one_batch_each_get_their_own_tokens(
    engine: SpeechEngine, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """Three streamed requests and one plain one, in one batch: each sink gets
    its own answer's tokens, all before the future is done, and decoded
    piece by piece they join to the answer."""
    before = engine.stats.batches
    streams: list[list[int]] = [[], [], []]
    done_at_token: list[bool] = []
    futures = [
        engine.submit(
            SpeechRequest(load_audio(wav), instruction),
            on_token=None if i == 3 else streams[i].append,
        )
        for i, (wav, instruction) in enumerate(zip(wavs, INSTRUCTIONS, strict=True))
    ]
    futures[0].add_done_callback(lambda _: done_at_token.append(True))
    results = [future.result(timeout=60) for future in futures]

    assert engine.stats.batches == before + 1
    for i in range(3):
        assert streams[i] == results[i].token_ids, i
        deltas = engine.text_deltas()
        pieces = [deltas.push(token) for token in streams[i]]
        assert "".join(pieces) + deltas.finish(results[i].text) == results[i].text
        (alone,) = reference.run(wavs[i], INSTRUCTIONS[i])
        assert_same(results[i], alone)
    assert streams[0] != streams[1]  # control: no mix-up between requests
    assert done_at_token == [True]


def test_abandoned_requests_stop_costing_decoding_steps(
    engine: SpeechEngine, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """In one batch: a streamed request whose sink fails at its first token
    (its client gone) stops after that step with exactly that token and
    ``stop_reason="cancelled"``; one abandoned while queued is skipped; the
    plain one is the pipeline's answer alone. Both count as cancelled."""
    before = engine.stats.cancelled
    sent: list[int] = []

    def gone_after_one(token: int) -> None:
        sent.append(token)
        raise ConnectionError("the client went away")

    plain = engine.submit(SpeechRequest(load_audio(wavs[1]), INSTRUCTIONS[1]))
    gone = engine.submit(
        SpeechRequest(load_audio(wavs[0]), INSTRUCTIONS[0]), on_token=gone_after_one
    )
    queued = engine.submit(SpeechRequest(load_audio(wavs[2]), INSTRUCTIONS[2]))
    queued.abandon()

    result = gone.result(timeout=60)
    (alone,) = reference.run(wavs[0], INSTRUCTIONS[0])
    assert len(alone.token_ids) > 1  # control: it had more to say
    assert result.stop_reason == "cancelled"
    assert result.token_ids == sent == alone.token_ids[:1]
    (plain_alone,) = reference.run(wavs[1], INSTRUCTIONS[1])
    assert_same(plain.result(timeout=60), plain_alone)
    assert queued.cancelled()
    assert engine.stats.cancelled == before + 2


# -- the HTTP API --------------------------------------------------------------


def _upload(path: Path) -> dict[str, Any]:
    return {"file": (path.name, path.read_bytes(), "audio/wav")}


def _chat(
    path: Path, text: str = "Transcribe the audio.", **extra: Any
) -> dict[str, Any]:
    audio = base64.b64encode(path.read_bytes()).decode()
    return {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {
                        "type": "input_audio",
                        "input_audio": {"data": audio, "format": "wav"},
                    },
                ],
            }
        ],
        **extra,
    }


def test_audio_endpoints_answer_as_the_pipeline(
    client: TestClient, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    expected = reference.transcribe(wavs[0])
    form = {"model": MODEL}
    response = client.post(
        "/v1/audio/transcriptions", files=_upload(wavs[0]), data=form
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"text": expected}

    text = client.post(
        "/v1/audio/transcriptions",
        files=_upload(wavs[0]),
        data=form | {"response_format": "text"},
    )
    assert text.text == expected

    verbose = client.post(
        "/v1/audio/transcriptions",
        files=_upload(wavs[0]),
        data=form | {"response_format": "verbose_json", "language": "en"},
    ).json()
    assert verbose["text"] == expected and verbose["language"] == "english"
    assert verbose["duration"] == pytest.approx(1.2, abs=1e-3)

    translated = client.post(
        "/v1/audio/translations",
        files=_upload(wavs[1]),
        data=form | {"target_language": "de"},
    )
    assert translated.json() == {"text": reference.translate(wavs[1], "de")}


def test_chat_answers_as_the_pipeline_and_streams_the_same_text(
    client: TestClient, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    (expected,) = reference.run(wavs[3], "Summarise the talk.\n<speech>\nBe brief.")
    body = _chat(wavs[3], "Summarise the talk.")
    body["messages"][0]["content"].append({"type": "text", "text": "Be brief."})

    answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["choices"][0]["message"]["content"] == expected.text
    assert answer["usage"]["completion_tokens"] == len(expected.token_ids)
    assert answer["usage"]["prompt_tokens"] == expected.prompt_len

    with client.stream(
        "POST", "/v1/chat/completions", json=body | {"stream": True}
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in stream.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert "".join(pieces) == expected.text
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_system_message_is_the_pipelines_system_prompt(
    client: TestClient, wavs: list[Path]
) -> None:
    system = "You are a careful transcriber."
    reference = SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GenerationConfig(max_new_tokens=8),
        system_prompt=system,
    )
    (expected,) = reference.run(wavs[2], "Transcribe the audio.\n<speech>")
    body = _chat(wavs[2])
    body["messages"].insert(0, {"role": "system", "content": system})
    answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["usage"]["prompt_tokens"] == expected.prompt_len
    assert answer["choices"][0]["message"]["content"] == expected.text


def _bad_requests(
    wavs: list[Path], tmp: Path
) -> list[tuple[str, str, dict[str, Any], int, str | None]]:
    """(name, path, request kwargs, status, error code)."""
    corrupt = write_corrupt(tmp / "corrupt.wav")
    short = write_too_short(tmp / "short.wav")
    long = write_wav(tmp / "long.wav", tone(5.0))
    big = tmp / "big.wav"
    big.write_bytes(b"\0" * 300_000)
    form = {"model": MODEL}
    chat = _chat(wavs[0])
    transcribe = "/v1/audio/transcriptions"
    completions = "/v1/chat/completions"

    def with_audio(data: str, fmt: str = "wav") -> dict[str, Any]:
        body = json.loads(json.dumps(chat))
        body["messages"][0]["content"][1]["input_audio"] = {"data": data, "format": fmt}
        return body

    return [
        ("missing file", transcribe, {"data": form}, 400, None),
        ("missing model", transcribe, {"files": _upload(wavs[0])}, 400, None),
        (
            "unknown model",
            transcribe,
            {"files": _upload(wavs[0]), "data": {"model": "gpt-4o"}},
            404,
            "model_not_found",
        ),
        (
            "undecodable",
            transcribe,
            {"files": _upload(corrupt), "data": form},
            400,
            "undecodable_audio",
        ),
        (
            "too short",
            transcribe,
            {"files": _upload(short), "data": form},
            400,
            "too_short_audio",
        ),
        (
            "too long",
            transcribe,
            {"files": _upload(long), "data": form},
            400,
            "audio_too_long",
        ),
        (
            "too large",
            transcribe,
            {"files": _upload(big), "data": form},
            400,
            "audio_too_large",
        ),
        (
            "m4a",
            transcribe,
            {"files": {"file": ("a.m4a", b"xxxx", "audio/mp4")}, "data": form},
            400,
            "unsupported_audio_format",
        ),
        (
            "bad format",
            transcribe,
            {"files": _upload(wavs[0]), "data": form | {"response_format": "docx"}},
            400,
            None,
        ),
        (
            "bad temperature",
            transcribe,
            {"files": _upload(wavs[0]), "data": form | {"temperature": "hot"}},
            400,
            None,
        ),
        (
            "no target",
            "/v1/audio/translations",
            {"files": _upload(wavs[0]), "data": form},
            400,
            None,
        ),
        (
            "unknown target",
            "/v1/audio/translations",
            {"files": _upload(wavs[0]), "data": form | {"target_language": "xx"}},
            400,
            "unsupported_language",
        ),
        (
            "not json",
            completions,
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            None,
        ),
        (
            "no messages",
            completions,
            {"json": {"model": MODEL, "messages": []}},
            400,
            None,
        ),
        (
            "chat unknown model",
            completions,
            {"json": chat | {"model": "nope"}},
            404,
            "model_not_found",
        ),
        (
            "no audio",
            completions,
            {"json": chat | {"messages": [{"role": "user", "content": "hi"}]}},
            400,
            "missing_audio",
        ),
        (
            "assistant turn",
            completions,
            {
                "json": chat
                | {
                    "messages": [
                        *chat["messages"],
                        {"role": "assistant", "content": "ok"},
                    ]
                }
            },
            400,
            "unsupported_conversation",
        ),
        ("bad base64", completions, {"json": with_audio("@@@")}, 400, "invalid_base64"),
        (
            "ogg format",
            completions,
            {
                "json": with_audio(
                    chat["messages"][0]["content"][1]["input_audio"]["data"], "ogg"
                )
            },
            400,
            "unsupported_audio_format",
        ),
        (
            "base64 junk",
            completions,
            {"json": with_audio(base64.b64encode(b"not audio at all").decode())},
            400,
            "undecodable_audio",
        ),
        (
            "placeholder in text",
            completions,
            {"json": _chat(wavs[0], "say <speech>")},
            400,
            "invalid_instruction",
        ),
        ("top_p", completions, {"json": chat | {"top_p": 0}}, 400, None),
        ("n=2", completions, {"json": chat | {"n": 2}}, 400, None),
        ("temperature", completions, {"json": chat | {"temperature": 3}}, 400, None),
        ("unknown route", "/v1/embeddings", {"json": {}}, 404, None),
    ]


def test_bad_requests_get_openais_error_shape_and_status(
    client: TestClient, wavs: list[Path], tmp_path: Path
) -> None:
    for name, path, kwargs, status, code in _bad_requests(wavs, tmp_path):
        response = client.post(path, **kwargs)
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, name
        assert error["message"], name
        if code is not None:
            assert error["code"] == code, (name, error)

    assert client.get("/health").json()["status"] == "ok"


def test_the_api_key_is_required_on_v1_only(
    client: TestClient, wavs: list[Path]
) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200
    assert client.get("/v1/models").json()["data"][0]["id"] == MODEL
    assert client.get("/v1/models/nope").status_code == 404


def test_bad_requests_among_good_ones_change_no_answer(
    client: TestClient,
    reference: SpeechMapperPipeline,
    wavs: list[Path],
    tmp_path: Path,
) -> None:
    """Concurrent good and bad requests (the subprocess test sends 50 + 50)."""
    bad = _bad_requests(wavs, tmp_path)
    expected = [reference.transcribe(wav) for wav in wavs]
    answers: dict[int, Any] = {}

    def good(i: int) -> None:
        response = client.post(
            "/v1/audio/transcriptions",
            files=_upload(wavs[i % 4]),
            data={"model": MODEL},
        )
        answers[i] = response.json()

    def refused(i: int) -> None:
        _, path, kwargs, status, _ = bad[i % len(bad)]
        answers[-1 - i] = client.post(path, **kwargs).status_code == status

    threads = [threading.Thread(target=good, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=refused, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for i in range(8):
        assert answers[i] == {"text": expected[i % 4]}
        assert answers[-1 - i] is True
    assert client.get("/health").json()["status"] == "ok"


# -- what `speechmapper serve` loads ---------------------------------------------


def test_the_projector_names_its_llm_or_the_command_must(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from speechmapper_plugin.serving.__main__ import API_KEY_ENV, build_parser
    from speechmapper_plugin.serving.loading import projector_cards
    from tests.support.serving import EXPORT_NAME, export_test_projector

    export = export_test_projector(tmp_path / "export")
    assert projector_cards(str(export), None) == (EXPORT_NAME, "test_llama")
    assert projector_cards("test_projector_llama", None) == (
        "test_projector_llama",
        "test_llama",
    )
    assert projector_cards("test_projector_base", "test_llama")[1] == "test_llama"
    with pytest.raises(ValueError, match="--llm"):
        projector_cards("test_projector_base", None)  # records no target_llm
    with pytest.raises(ValueError, match="no such directory"):
        projector_cards("no_such_projector", None)
    with pytest.raises(ValueError, match="not an export directory"):
        projector_cards(str(tmp_path), None)

    parser = build_parser()
    assert parser.parse_args(["p"]).host == "127.0.0.1"
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert build_parser().parse_args(["p"]).api_key == "from-env"


class _FailingPipeline(SpeechMapperPipeline):
    """Raises for any batch holding a ``FAIL`` instruction: a model error that
    no check foresaw (the engine must contain it to that request)."""

    def run(self, inputs: Any, instructions: Any, **options: Any) -> Any:
        if any("FAIL" in instruction for instruction in instructions):
            raise RuntimeError("the model failed")
        return super().run(inputs, instructions, **options)


class _FailsMidAnswer(SpeechMapperPipeline):
    """Raises after the first streamed step of a batch holding a ``FAIL``
    instruction: an error after tokens went out."""

    def run(self, inputs: Any, instructions: Any, **options: Any) -> Any:
        on_tokens = options.get("on_tokens")
        if on_tokens is not None and any("FAIL" in i for i in instructions):

            def fail(tokens: dict[int, int]) -> None:
                on_tokens(tokens)
                raise RuntimeError("the model failed mid-answer")

            options["on_tokens"] = fail
        return super().run(inputs, instructions, **options)


def test_a_request_failing_after_its_first_tokens_is_not_retried(
    reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """Its batchmate that streamed nothing is answered alone; over HTTP the
    failure after the first tokens is an ``error`` event in the stream."""
    engine = _engine(_pipeline(kind=_FailsMidAnswer))
    try:
        sent: list[int] = []
        failing = engine.submit(
            SpeechRequest(load_audio(wavs[0]), "FAIL\n<speech>"), on_token=sent.append
        )
        plain = engine.submit(SpeechRequest(load_audio(wavs[1]), INSTRUCTIONS[1]))
        with pytest.raises(RuntimeError, match="mid-answer"):
            failing.result(timeout=60)
        assert sent  # its first tokens went out before the failure
        (alone,) = reference.run(wavs[1], INSTRUCTIONS[1])
        assert_same(plain.result(timeout=60), alone)
        assert engine.stats.batches == 2 and engine.stats.failures == 1

        app = create_app(engine)
        with TestClient(app) as client:
            body = _chat(wavs[0], "FAIL") | {"model": MODEL, "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=body) as stream:
                assert stream.status_code == 200
                events = [json.loads(line[6:]) for line in stream.iter_lines() if line]
            assert events[-1]["error"]["type"] == "server_error"
            assert "mid-answer" in events[-1]["error"]["message"]
            assert any(
                e.get("choices", [{}])[0]["delta"].get("content") for e in events[:-1]
            )
            assert client.get("/health").json()["status"] == "ok"
    finally:
        engine.close()


def test_a_failing_batch_fails_only_the_request_that_causes_it(
    reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    engine = _engine(_pipeline(kind=_FailingPipeline))
    try:
        instructions = [INSTRUCTIONS[0], "FAIL\n<speech>", INSTRUCTIONS[1]]
        futures = [
            engine.submit(SpeechRequest(load_audio(wav), instruction))
            for wav, instruction in zip(wavs[:3], instructions, strict=True)
        ]
        with pytest.raises(RuntimeError, match="the model failed"):
            futures[1].result(timeout=60)
        for i in (0, 2):
            (alone,) = reference.run(wavs[i], instructions[i])
            assert_same(futures[i].result(timeout=60), alone)
        # One batch of three failed, then each was run alone.
        assert engine.stats.largest_batch == 3 and engine.stats.batches == 4
        assert engine.stats.failures == 1 and engine.alive

        # Over HTTP: a 500 in OpenAI's shape, and the server goes on.
        app = create_app(engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post(
                "/v1/chat/completions", json=_chat(wavs[0], "FAIL") | {"model": MODEL}
            )
            assert response.status_code == 500
            assert response.json()["error"]["type"] == "server_error"
            assert client.get("/health").json()["status"] == "ok"
    finally:
        engine.close()


def test_the_prompt_cache_is_bounded(wavs: list[Path]) -> None:
    """Chat instructions are mostly unique: a long-running server must not
    keep every encoded prompt, in the base pipeline nor in a variant for
    another system prompt."""
    small = SpeechEngine(_pipeline(prompt_cache_size=3), model_id=MODEL)
    try:
        waveform = load_audio(wavs[0])
        for i in range(10):
            for system in (None, "Be brief."):
                request = SpeechRequest(waveform, f"Question {i}?\n<speech>", system)
                small.check(request)
                variant, _ = small._variant(request)
                assert variant.cached_prompts <= 3
        assert small.pipeline.cached_prompts == 3
    finally:
        small.close()


def test_long_audio_is_cut_and_answered_per_segment(
    engine: SpeechEngine, reference: SpeechMapperPipeline, tmp_path: Path
) -> None:
    """40 s is more than the tiny LLM's context takes whole (32.8 s): the
    server cuts 15 s windows and joins their answers; the segments, with
    their times, are in ``verbose_json``, ``srt`` and ``vtt``."""
    path = tmp_path / "long.wav"
    waveform = long_recording(
        path, reference, seconds=10.0, freqs=[150.0, 220.0, 300.0, 180.0]
    )
    expected = window_results(reference, waveform, reference.prompts.transcription())
    app = create_app(
        engine,
        limits=AudioLimits(max_bytes=2_000_000, max_seconds=60.0),
        segmenter=SegmenterConfig(kind="fixed", max_seconds=15.0),
    )
    with TestClient(app) as client:
        form = {"model": MODEL}
        verbose = client.post(
            "/v1/audio/transcriptions",
            files=_upload(path),
            data=form | {"response_format": "verbose_json"},
        ).json()
        srt = client.post(
            "/v1/audio/transcriptions",
            files=_upload(path),
            data=form | {"response_format": "srt"},
        )
        vtt = client.post(
            "/v1/audio/transcriptions",
            files=_upload(path),
            data=form | {"response_format": "vtt"},
        )

    assert [(s["start"], s["end"]) for s in verbose["segments"]] == [
        (0.0, 15.0),
        (15.0, 30.0),
        (30.0, 40.0),
    ]
    assert [s["tokens"] for s in verbose["segments"]] == [r.token_ids for r in expected]
    assert verbose["text"] == " ".join(r.text for r in expected if r.text)
    assert srt.status_code == 200 and vtt.status_code == 200
    texts = [r.text for r in expected if r.text]
    if texts:  # the random tiny LLM may answer nothing at all
        assert srt.text.startswith(f"1\n00:00:00,000 --> 00:00:15,000\n{texts[0]}\n\n")
        assert vtt.text.startswith(
            f"WEBVTT\n\n00:00:00.000 --> 00:00:15.000\n{texts[0]}\n\n"
        )


def test_subtitle_formats_on_hand_worked_segments() -> None:
    from speechmapper_plugin.serving.subtitles import to_srt, to_vtt

    @dataclasses.dataclass
    class Cue:
        start: float
        end: float
        text: str

    cues = [Cue(0.0, 1.5, " Hello. "), Cue(2.0, 3.0, ""), Cue(61.25, 3725.5, "Bye")]
    assert to_srt(cues) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n"
        "2\n00:01:01,250 --> 01:02:05,500\nBye\n\n"
    )
    assert to_vtt(cues) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nHello.\n\n"
        "00:01:01.250 --> 01:02:05.500\nBye\n\n"
    )


def test_an_upload_longer_than_the_limit_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import speechmapper_plugin.serving.audio as serving_audio
    from speechmapper_plugin.serving import AudioLimits
    from speechmapper_plugin.serving.audio import decode_upload
    from speechmapper_plugin.serving.errors import ApiError

    limits = AudioLimits(max_seconds=5.0)
    long = write_wav(tmp_path / "long.wav", tone(9.0)).read_bytes()
    short = write_wav(tmp_path / "short.wav", tone(2.0)).read_bytes()

    decoded: list[int] = []
    load_input = serving_audio.load_input

    def counting(data: bytes, **kwargs: Any) -> torch.Tensor:
        decoded.append(len(data))
        return load_input(data, **kwargs)

    monkeypatch.setattr(serving_audio, "load_input", counting)
    with pytest.raises(ApiError) as refused:
        decode_upload(long, limits, param="file")
    assert (refused.value.code, refused.value.status) == ("audio_too_long", 400)
    assert "9.0 s long" in refused.value.message
    assert decoded == []  # nothing decoded

    # Within the limit: decoded (chunk by chunk) to what load_audio gives.
    waveform = decode_upload(short, limits, param="file")
    assert decoded == [len(short)]
    torch.testing.assert_close(waveform, load_audio(short), atol=1e-5, rtol=0)
