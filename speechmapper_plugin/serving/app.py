"""The OpenAI-compatible HTTP API around a :class:`SpeechEngine`.

- ``POST /v1/audio/transcriptions``: multipart ``file``, ``model``,
  ``language``, ``prompt``, ``temperature``, ``response_format`` (``json``,
  ``text``, ``verbose_json`` with timed ``segments``, ``srt``, ``vtt``).
  Audio longer than the projector takes is cut by the server's segmenter
  (fixed 30 s windows or Silero VAD) and the segments' answers joined.
- ``POST /v1/audio/translations``: the same plus ``target_language`` (this
  model translates *from* English speech, so the target is named).
- ``POST /v1/chat/completions``: one user turn with an ``input_audio`` part
  beside text, ``temperature``/``top_p``/``max_tokens``/``seed``, and
  ``stream: true`` as server-sent events, a chunk for each token that adds
  text, sent as the token is generated (beam search, configured on the
  server, sends the answer in one chunk at its end). A request refused
  before its first token gets its error status; an error after it is an
  ``error`` event (the ``openai`` client raises it).
- ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health`` (no key needed).

A client that disconnects before its answer is complete (a closed stream, a
request given up) abandons its requests (:meth:`RequestFuture.abandon`): they
stop at their batch's next decoding step instead of decoding for nobody, and
``/health`` counts them (``cancelled``).

Every refusal has OpenAI's error shape and status (400, 401, 404); an error
the server did not foresee is a 500 in the same shape, and the worker lives on.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.data.instructions.prompts import language_name
from speechmapper_plugin.generation import StopReason
from speechmapper_plugin.serving.audio import (
    AudioLimits,
    decode_base64_audio,
    decode_upload,
)
from speechmapper_plugin.serving.engine import (
    RequestFuture,
    Sampling,
    SpeechEngine,
    SpeechRequest,
)
from speechmapper_plugin.serving.errors import (
    AUTHENTICATION,
    INVALID_REQUEST,
    NOT_FOUND,
    SERVER_ERROR,
    ApiError,
    bad_request,
    error_body,
)
from speechmapper_plugin.serving.schemas import parse_chat_request, speech_turn
from speechmapper_plugin.serving.subtitles import to_srt, to_vtt
from speechmapper_plugin.speech_llm import AudioInputError, PipelineResult

RESPONSE_FORMATS: Final = ("json", "text", "verbose_json", "srt", "vtt")

_FORM_OVERHEAD: Final = 64 * 1024
"""Bytes a multipart body may carry beyond the file (fields, boundaries)."""

FINISH_REASONS: Final[dict[StopReason, str]] = {
    "eos": "stop",
    "max_length": "length",
    "repetition": "stop",
    "cancelled": "stop",
}
"""OpenAI's ``finish_reason`` for each stop reason (a loop the repetition
guard cut is a stop: OpenAI has no name for it; a cancelled answer's client
is gone and never sees one)."""

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was complete."""


def create_app(
    engine: SpeechEngine,
    *,
    api_key: str | None = None,
    limits: AudioLimits | None = None,
    segmenter: SegmenterConfig | None = None,
) -> FastAPI:
    """The FastAPI application serving ``engine``.

    :param api_key: When set, every ``/v1`` request must send
        ``Authorization: Bearer <api_key>`` (401 otherwise).
    :param segmenter: How the audio endpoints cut audio longer than the
        models take (default: fixed 30 s windows).
    """
    limits = limits or AudioLimits()
    segmenter = segmenter or SegmenterConfig()
    segmenter.check()
    app = FastAPI(title="SpeechMapper (OpenAI-compatible)")
    created = int(time.time())

    @app.middleware("http")
    async def authenticate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if api_key is not None and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), api_key.encode()
            ):
                return _error_response(
                    ApiError(
                        401,
                        "Missing or incorrect API key: send `Authorization: Bearer <key>` with the key the server was started with.",
                        type=AUTHENTICATION,
                        code="invalid_api_key",
                    )
                )
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(
        request: Request, error: RequestValidationError
    ) -> Response:
        return _error_response(bad_request(f"Invalid request: {error.errors()}"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        kind = NOT_FOUND if error.status_code == 404 else INVALID_REQUEST
        message = (
            f"No endpoint {request.method} {request.url.path}."
            if error.status_code in (404, 405)
            else str(error.detail)
        )
        return JSONResponse(error_body(message, kind), status_code=error.status_code)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone) -> Response:
        # Nobody reads it: nginx's "client closed request".
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        return JSONResponse(
            error_body(
                f"Internal error: {type(error).__name__}: {error}", SERVER_ERROR
            ),
            status_code=500,
        )

    def model_card() -> dict[str, Any]:
        return {
            "id": engine.model_id,
            "object": "model",
            "created": created,
            "owned_by": "speechmapper",
        }

    def check_model(model: object) -> None:
        if not isinstance(model, str) or not model:
            raise bad_request("`model` is required.", param="model")
        if model != engine.model_id:
            raise ApiError(
                404,
                f"The model `{model}` does not exist; this server serves `{engine.model_id}`.",
                param="model",
                code="model_not_found",
            )

    async def answers(
        http: Request, requests: Sequence[SpeechRequest]
    ) -> list[PipelineResult]:
        """Submit ``requests`` and wait for their results (an unusable input
        as a 400); if the client disconnects first they are abandoned."""
        futures: list[RequestFuture] = []
        try:
            for request in requests:
                futures.append(engine.submit(request))
        except BaseException:
            for future in futures:
                future.abandon()
            raise
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        try:
            return await unless_gone(http, waiting, futures)
        except AudioInputError as ex:
            raise bad_request(str(ex), code=ex.code) from None

    def outcome(future: Future[PipelineResult]) -> PipelineResult:
        """The done ``future``'s result; an unusable input as a 400."""
        try:
            return future.result()
        except AudioInputError as ex:
            raise bad_request(str(ex), code=ex.code) from None

    async def first_token(
        http: Request, request: SpeechRequest
    ) -> tuple[int | None, asyncio.Queue[int | None], RequestFuture]:
        """Submit ``request`` with its tokens going to a queue (``None``
        after the last) fed from the worker thread, and wait for the first
        item: a request that fails before its first token still gets its
        error status. Returns that item, the queue of the rest, the future."""
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[int | None] = asyncio.Queue()

        def put(item: int | None) -> None:
            loop.call_soon_threadsafe(tokens.put_nowait, item)

        future = engine.submit(request, on_token=put)
        future.add_done_callback(lambda _: put(None))
        first = await unless_gone(http, tokens.get(), [future])
        if first is None:
            outcome(future)
        return first, tokens, future

    @app.get("/health")
    async def health() -> Response:
        alive = engine.alive
        body = {
            "status": "ok" if alive else "worker stopped",
            "model": engine.model_id,
            "requests": engine.stats.requests,
            "batches": engine.stats.batches,
            "largest_batch": engine.stats.largest_batch,
            "cancelled": engine.stats.cancelled,
        }
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model}")
    async def model(model: str) -> dict[str, Any]:
        check_model(model)
        return model_card()

    def check_size(request: Request, most: int, param: str) -> None:
        """Refuse a body over ``most`` bytes before reading it."""
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > most:
            raise bad_request(
                f"The request is {size} bytes; this server takes audio of at most {limits.max_bytes} bytes.",
                param=param,
                code="audio_too_large",
            )

    async def audio_endpoint(request: Request, task: str) -> Response:
        check_size(request, limits.max_bytes + _FORM_OVERHEAD, "file")
        try:
            form = await request.form(max_files=1)
        except Exception as ex:
            raise bad_request(
                f"The body must be multipart/form-data with a `file` field ({type(ex).__name__}: {ex}).",
            ) from None

        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request(
                "`file` is required: the audio file to transcribe.", param="file"
            )
        check_model(form.get("model"))

        fmt = _text_field(form, "response_format") or "json"
        if fmt not in RESPONSE_FORMATS:
            raise bad_request(
                f"`response_format` must be one of {', '.join(RESPONSE_FORMATS)}, but is {fmt!r}.",
                param="response_format",
            )
        temperature = _float_field(form, "temperature")
        language = _text_field(form, "language")
        if language:
            _language(language, "language")
        prompt = _text_field(form, "prompt")

        prompts = engine.pipeline.prompts
        if task == "translate":
            target = _text_field(form, "target_language")
            if not target:
                raise bad_request(
                    "`target_language` is required: the language to translate the English speech into (a code such as `de` or a name).",
                    param="target_language",
                )
            _language(target, "target_language")
            instruction = prompts.translation(target)
        else:
            instruction = prompts.transcription()
        if prompt:
            # OpenAI's prompt guides style and spelling; here it is context for the LLM.
            instruction = f"{prompt.strip()}\n{instruction}"

        data = await upload.read()
        waveform = await asyncio.to_thread(
            decode_upload, data, limits, param="file", filename=upload.filename
        )
        speech = SpeechRequest(
            waveform, instruction, sampling=Sampling(temperature=temperature)
        )
        parts = await asyncio.to_thread(engine.split, speech, segmenter)
        results = await answers(request, [part for _, part in parts])
        segments = [
            _TimedText(s.start_seconds, s.end_seconds, r.text, r.token_ids)
            for (s, _), r in zip(parts, results, strict=True)
        ]
        text = " ".join(s.text for s in segments if s.text)

        if fmt == "text":
            return PlainTextResponse(text)
        if fmt == "json":
            return JSONResponse({"text": text})
        if fmt == "srt":
            return PlainTextResponse(to_srt(segments))
        if fmt == "vtt":
            return PlainTextResponse(to_vtt(segments), media_type="text/vtt")
        return JSONResponse(
            {
                "task": "translate" if task == "translate" else "transcribe",
                "language": (
                    language_name(language) if language else "English"
                ).lower(),
                "duration": speech.seconds,
                "text": text,
                "segments": [
                    {
                        "id": i,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "tokens": s.tokens,
                    }
                    for i, s in enumerate(segments)
                ],
            }
        )

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await audio_endpoint(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request) -> Response:
        return await audio_endpoint(request, "translate")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        # base64: 4 characters per 3 bytes.
        check_size(request, limits.max_bytes * 4 // 3 + _FORM_OVERHEAD, "messages")
        try:
            body = await request.json()
        except Exception as ex:
            raise bad_request(f"The body is not valid JSON ({ex}).") from None
        chat = parse_chat_request(body)
        check_model(chat.model)

        system, instruction, audio, index = speech_turn(chat)
        param = f"messages.{index}.content.input_audio"
        waveform = await asyncio.to_thread(
            decode_base64_audio,
            audio.input_audio.data,
            audio.input_audio.format,
            limits,
            param=param,
        )
        sampling = Sampling(
            temperature=chat.temperature,
            top_p=chat.top_p,
            max_tokens=(
                chat.max_tokens
                if chat.max_completion_tokens is None
                else chat.max_completion_tokens
            ),
            seed=chat.seed,
        )
        speech = SpeechRequest(waveform, instruction, system, sampling)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())

        def usage(result: PipelineResult) -> dict[str, int]:
            return {
                "prompt_tokens": result.prompt_len,
                "completion_tokens": len(result.token_ids),
                "total_tokens": result.prompt_len + len(result.token_ids),
            }

        def finish(result: PipelineResult) -> str:
            return FINISH_REASONS.get(result.stop_reason, "stop")

        if not chat.stream:
            (result,) = await answers(request, [speech])
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": now,
                    "model": engine.model_id,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": result.text},
                            "logprobs": None,
                            "finish_reason": finish(result),
                        }
                    ],
                    "usage": usage(result),
                }
            )

        include_usage = (
            chat.stream_options is not None and chat.stream_options.include_usage
        )

        def chunk(delta: dict[str, Any], reason: str | None) -> str:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": now,
                "model": engine.model_id,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": reason,
                    }
                ],
            }
            if include_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n"

        token, tokens, future = await first_token(request, speech)

        async def events() -> AsyncIterator[str]:
            try:
                async for event in answer_events():
                    yield event
            finally:
                # Closed or cancelled by a disconnect before the answer ended.
                if not future.done():
                    future.abandon()

        async def answer_events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            deltas = engine.text_deltas()
            item = token
            while item is not None:
                piece = deltas.push(item)
                if piece:
                    yield chunk({"content": piece}, None)
                item = await tokens.get()
            try:
                result = outcome(future)
            except Exception as ex:
                error = ex if isinstance(ex, ApiError) else None
                body = (
                    error.body()
                    if error is not None
                    else error_body(
                        f"Internal error: {type(ex).__name__}: {ex}", SERVER_ERROR
                    )
                )
                yield f"data: {json.dumps(body)}\n\n"
                return
            rest = deltas.finish(result.text)
            if rest:
                yield chunk({"content": rest}, None)
            yield chunk({}, finish(result))
            if include_usage:
                final = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": now,
                    "model": engine.model_id,
                    "choices": [],
                    "usage": usage(result),
                }
                yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def unless_gone(
    http: Request, waiting: Awaitable[T], futures: Sequence[RequestFuture]
) -> T:
    """``await waiting``, unless the client of ``http`` (whose body was read)
    disconnects first, or the handler is cancelled: then ``futures`` are
    abandoned and :class:`ClientGone` is raised."""
    task = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnect(http))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            for future in futures:
                future.abandon()
            task.cancel()
            task.add_done_callback(_retrieved)
    if not task.done():
        raise ClientGone(f"{http.method} {http.url.path}: the client disconnected.")
    return task.result()


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Marks the outcome of an abandoned wait as read (a cancelled
    ``asyncio.gather`` ends with an exception nobody else reads)."""
    if not task.cancelled():
        task.exception()


async def _disconnect(http: Request) -> None:
    """Returns when the client disconnects (its request body already read:
    what ``receive`` gives next is the disconnect)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


@dataclass(frozen=True)
class _TimedText:
    """One segment's answer and where it is in the upload (seconds)."""

    start: float
    end: float
    text: str
    tokens: list[int]


def _error_response(error: ApiError) -> Response:
    return JSONResponse(error.body(), status_code=error.status)


def _text_field(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"`{name}` must be a text field, not a file.", param=name)
    return value.strip()


def _float_field(form: Any, name: str) -> float | None:
    value = _text_field(form, name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise bad_request(
            f"`{name}` must be a number, but is {value!r}.", param=name
        ) from None


def _language(value: str, param: str) -> str:
    """The English name of a language code or name (see ``language_name``)."""
    try:
        return language_name(value)
    except ValueError as ex:
        raise bad_request(str(ex), param=param, code="unsupported_language") from None
