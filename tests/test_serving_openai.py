"""``speechmapper serve`` in a subprocess on an export of the tiny models,
called with the official ``openai`` client: every endpoint (streaming
included) answers what :class:`SpeechMapperPipeline` answers for the same
input alone, bad requests raise the client's own typed errors, and 50 bad
requests sent together with 50 good ones change no good answer and leave
``/health`` green. One server for the module."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from speechmapper_plugin.speech_llm import SpeechMapperPipeline
from tests.support.audio import tone, write_corrupt, write_too_short, write_wav
from tests.support.cards import SessionCards
from tests.support.mp3 import can_write_mp3, write_mp3
from tests.support.serving import (
    EXPORT_NAME,
    MAX_NEW_TOKENS,
    Server,
    b64,
    export_arguments,
    export_test_projector,
    reference_pipeline,
    serve,
)

pytestmark = [
    pytest.mark.slow,
    # openai deprecates its translations endpoint (OpenAI's own is Whisper-only).
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tests.test_serving_openai"),
]

KEY = "sk-test-serving"

STEP_DELAY = 0.2
"""Seconds the server pauses after each decoding step of a streamed batch."""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def export(root: Path) -> Path:
    return export_test_projector(root / "export")


@pytest.fixture(scope="module")
def server(root: Path, export: Path, test_cards: SessionCards) -> Iterator[Server]:
    with serve(
        *export_arguments(export, test_cards.card_dir),
        "--api-key",
        KEY,
        "--max-batch-size",
        "8",
        "--max-wait-ms",
        "20",
        "--max-audio-seconds",
        "6",
        "--max-new-tokens",
        str(MAX_NEW_TOKENS),
        # Pauses streamed batches only: the other requests run at full speed.
        "--step-delay-ms",
        str(int(STEP_DELAY * 1000)),
        cwd=root,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=f"{server.url}/v1", max_retries=0)


@pytest.fixture(scope="module")
def reference() -> SpeechMapperPipeline:
    return reference_pipeline()


@pytest.fixture(scope="module")
def wavs(root: Path) -> list[Path]:
    return [
        write_wav(root / f"a{i}.wav", tone(seconds, freq=freq, seed=i))
        for i, (seconds, freq) in enumerate([(1.3, 200.0), (2.1, 150.0), (1.0, 260.0)])
    ]


def _audio_message(data: str, fmt: str, text: str) -> Any:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "input_audio", "input_audio": {"data": data, "format": fmt}},
            ],
        }
    ]


def test_models_and_audio_endpoints(
    client: openai.OpenAI, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    assert [m.id for m in client.models.list()] == [EXPORT_NAME]

    expected = reference.transcribe(wavs[0])
    with open(wavs[0], "rb") as fp:
        result = client.audio.transcriptions.create(model=EXPORT_NAME, file=fp)
    assert result.text == expected
    text = client.audio.transcriptions.create(
        model=EXPORT_NAME, file=wavs[0], response_format="text"
    )
    assert text == expected
    verbose = client.audio.transcriptions.create(
        model=EXPORT_NAME, file=wavs[0], response_format="verbose_json", language="en"
    )
    assert verbose.text == expected and verbose.duration == pytest.approx(1.3, abs=1e-3)

    translation = client.audio.translations.create(
        model=EXPORT_NAME, file=wavs[1], extra_body={"target_language": "de"}
    )
    assert translation.text == reference.translate(wavs[1], "de")


def test_chat_completions_plain_and_streamed(
    client: openai.OpenAI, reference: SpeechMapperPipeline, wavs: list[Path], root: Path
) -> None:
    inputs = [(b64(wavs[2]), "wav", wavs[2])]
    if can_write_mp3():
        mp3 = write_mp3(root / "c.mp3", tone(1.4, freq=220.0, seed=5), 16000)
        inputs.append((b64(mp3), "mp3", mp3))

    for data, fmt, path in inputs:
        (expected,) = reference.run(path, "Translate the audio into German.\n<speech>")
        messages = _audio_message(data, fmt, "Translate the audio into German.")
        answer = client.chat.completions.create(model=EXPORT_NAME, messages=messages)
        assert answer.choices[0].message.content == expected.text, fmt
        assert answer.usage is not None
        assert answer.usage.completion_tokens == len(expected.token_ids)

        stream = client.chat.completions.create(
            model=EXPORT_NAME,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        assert "".join(pieces) == expected.text
        assert len([p for p in pieces if p]) >= min(2, len(expected.token_ids))
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == len(expected.token_ids)


def test_errors_are_the_clients_typed_errors(
    client: openai.OpenAI, server: Server, wavs: list[Path], root: Path
) -> None:
    corrupt = write_corrupt(root / "corrupt.wav")
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(model=EXPORT_NAME, file=corrupt)
    assert bad.value.code == "undecodable_audio"

    with pytest.raises(openai.BadRequestError) as language:
        client.audio.translations.create(
            model=EXPORT_NAME, file=wavs[0], extra_body={"target_language": "qq"}
        )
    assert language.value.code == "unsupported_language"

    with pytest.raises(openai.NotFoundError) as missing:
        client.audio.transcriptions.create(model="whisper-1", file=wavs[0])
    assert missing.value.code == "model_not_found"

    wrong = openai.OpenAI(
        api_key="sk-wrong", base_url=f"{server.url}/v1", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()

    with pytest.raises(openai.BadRequestError) as turns:
        client.chat.completions.create(
            model=EXPORT_NAME,
            messages=[
                *_audio_message(b64(wavs[0]), "wav", "Hi"),
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Again"},
            ],
        )
    assert turns.value.code == "unsupported_conversation"

    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(
            model=EXPORT_NAME,
            messages=_audio_message(
                b64(write_wav(root / "long.wav", tone(7.0))), "wav", "Hi"
            ),
        )
    assert long.value.code == "audio_too_long"


def test_fifty_bad_and_fifty_good_requests_at_once(
    server: Server, reference: SpeechMapperPipeline, wavs: list[Path], root: Path
) -> None:
    short = write_too_short(root / "short.wav")
    corrupt = write_corrupt(root / "corrupt2.wav")
    expected = [reference.transcribe(wav) for wav in wavs]
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{server.url}/v1"

    def post(path: str, **kwargs: Any) -> tuple[int, Any]:
        kwargs["headers"] = headers | kwargs.get("headers", {})
        response = httpx.post(f"{url}/{path}", timeout=120, **kwargs)
        return response.status_code, response.json()

    def transcribe(path: Path) -> tuple[int, Any]:
        files = {"file": (path.name, path.read_bytes())}
        return post("audio/transcriptions", files=files, data={"model": EXPORT_NAME})

    def good(i: int) -> tuple[int, Any]:
        return transcribe(wavs[i % len(wavs)])

    def without_key() -> tuple[int, Any]:
        response = httpx.get(f"{url}/models", timeout=120)
        return response.status_code, response.json()

    garbage = _audio_message(base64.b64encode(b"RIFF garbage").decode(), "wav", "Hi")
    bad_requests = [
        lambda: transcribe(corrupt),
        lambda: transcribe(short),
        lambda: post(
            "chat/completions",
            content=b'{"model": ',
            headers={"content-type": "application/json"},
        ),
        lambda: post(
            "chat/completions", json={"model": EXPORT_NAME, "messages": garbage}
        ),
        without_key,
    ]

    def bad(i: int) -> tuple[int, Any]:
        return bad_requests[i % 5]()

    with ThreadPoolExecutor(max_workers=32) as pool:
        # Interleaved: bad requests arrive while good ones wait for their batch.
        pairs = [(pool.submit(good, i), pool.submit(bad, i)) for i in range(50)]
        good_futures, bad_futures = zip(*pairs, strict=True)
        goods = [f.result() for f in good_futures]
        bads = [f.result() for f in bad_futures]

    for i, (status, body) in enumerate(goods):
        assert status == 200 and body == {"text": expected[i % len(wavs)]}, (i, body)
    for i, (status, body) in enumerate(bads):
        assert status == (401 if i % 5 == 4 else 400), (i, body)
        assert set(body["error"]) == {"message", "type", "param", "code"}

    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok"
    assert health["largest_batch"] > 1  # the good ones were batched
    assert server.process.poll() is None


def test_chunks_arrive_while_the_answer_is_generated(
    client: openai.OpenAI, reference: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """With a pause after every decoding step (``--step-delay-ms``), the
    chunks reach the client spread over the decoding time, one step or more
    apart, not all at once after it (as when the whole answer was generated
    first); joined, they are the pipeline's answer."""
    instruction = "Translate the audio into German."
    (expected,) = reference.run(wavs[1], f"{instruction}\n<speech>")

    stream = client.chat.completions.create(
        model=EXPORT_NAME,
        messages=_audio_message(b64(wavs[1]), "wav", instruction),
        stream=True,
    )
    arrivals = [
        (time.monotonic(), chunk.choices[0].delta.content)
        for chunk in stream
        if chunk.choices and chunk.choices[0].delta.content
    ]

    assert "".join(piece for _, piece in arrivals) == expected.text
    assert len(arrivals) >= 3, arrivals
    spread = arrivals[-1][0] - arrivals[0][0]
    # >= STEP_DELAY between pieces when streamed; ~0 when sent after decoding.
    assert spread >= 0.5 * STEP_DELAY * (len(arrivals) - 1), arrivals


def _health(server: Server) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/health", timeout=10).json())


def _wait_for_cancelled(server: Server, count: int) -> dict[str, Any]:
    """``/health`` once it counts ``count`` cancelled requests (a batch
    counts them when it ends)."""
    deadline = time.monotonic() + 30
    while (health := _health(server))["cancelled"] < count:
        assert time.monotonic() < deadline, health
        time.sleep(0.02)
    assert health["cancelled"] == count, health
    return health


def _until_first_piece(stream: Any) -> str:
    """Reads ``stream`` up to its first chunk that adds text."""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            return str(chunk.choices[0].delta.content)
    raise AssertionError("the stream ended without text")


def test_a_client_that_goes_away_stops_costing_decoding_steps(
    client: openai.OpenAI,
    server: Server,
    reference: SpeechMapperPipeline,
    wavs: list[Path],
) -> None:
    """A streamed request closed by its client after its first piece is
    counted as cancelled (``/health``) and its batch ends some delayed steps
    earlier than the same request read to its end (the control); closed in a
    batch it shares with a plain request, the plain one still gets the
    pipeline's full answer; a plain request whose client gives up (a timeout)
    while it waits for that batch is counted as cancelled too."""
    instruction = "Translate the audio into German."
    messages = _audio_message(b64(wavs[1]), "wav", instruction)
    (expected,) = reference.run(wavs[1], f"{instruction}\n<speech>")
    assert len(expected.token_ids) == MAX_NEW_TOKENS  # control: 8 delayed steps
    before = _health(server)

    # The control: read to its end, alone in its batch.
    start = time.monotonic()
    whole = client.chat.completions.create(
        model=EXPORT_NAME, messages=messages, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in whole) == expected.text
    full_time = time.monotonic() - start

    # Closed after its first piece: its batch ends when it is cancelled.
    start = time.monotonic()
    with client.chat.completions.create(
        model=EXPORT_NAME, messages=messages, stream=True
    ) as stream:
        _until_first_piece(stream)
    _wait_for_cancelled(server, before["cancelled"] + 1)
    cancelled_time = time.monotonic() - start
    # Decoding on for nobody, it would take ~full_time; here >= 2 steps less
    # (measured: 1.8 s against 1.1 s).
    assert full_time - cancelled_time >= 2 * STEP_DELAY, (full_time, cancelled_time)

    # Shared batch: while a streamed request runs, one to be closed and a
    # plain one queue, and then share the next batch; a third gives up.
    plain = _audio_message(b64(wavs[2]), "wav", instruction)
    (expected_plain,) = reference.run(wavs[2], f"{instruction}\n<speech>")
    with ThreadPoolExecutor(max_workers=3) as pool:
        blocker = client.chat.completions.create(
            model=EXPORT_NAME, messages=messages, stream=True
        )
        _until_first_piece(blocker)  # its batch runs
        batches = _health(server)["batches"]

        def close_early() -> str:
            with client.chat.completions.create(
                model=EXPORT_NAME, messages=messages, stream=True
            ) as stream:
                return _until_first_piece(stream)

        closed = pool.submit(close_early)
        answer = pool.submit(
            client.chat.completions.create, model=EXPORT_NAME, messages=plain
        )
        impatient = client.with_options(timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model=EXPORT_NAME, messages=plain)
        rest = "".join(c.choices[0].delta.content or "" for c in blocker)
        assert rest and closed.result(timeout=60)
        result = answer.result(timeout=60)

    assert result.choices[0].message.content == expected_plain.text
    assert result.usage is not None
    assert result.usage.completion_tokens == len(expected_plain.token_ids)
    after = _wait_for_cancelled(server, before["cancelled"] + 3)
    assert after["batches"] == batches + 1  # the two shared one batch
    assert after["status"] == "ok"
