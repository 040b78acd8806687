"""The model side of the server: requests in, :class:`PipelineResult` out,
batched in one worker thread around :class:`SpeechMapperPipeline`.

Nothing here knows about HTTP, so the FastAPI app (:mod:`.app`) and a Ray
Serve deployment can wrap the same engine. Requests are checked
(:meth:`SpeechEngine.check`) before they are queued, so a bad one is refused
on its own and never reaches a batch; the worker collects what arrives within
``max_wait_ms`` (up to ``max_batch_size``), groups it by generation settings
and system prompt, and answers each group with one ``pipeline.run`` call.
Greedy answers do not depend on how inputs are batched, so each is the
pipeline's answer for that input alone (tested). Sampled requests with a
``seed`` run alone after ``torch.manual_seed(seed)``: the same request gives
the same sample whatever else is queued.

Streaming: a request submitted with ``on_token`` is given each token of its
answer from the worker thread as the batch steps (greedy and sampling; beam
search gives none, its answer is known at the end), before its future is
done.

A client that goes away stops costing decoding steps: :meth:`RequestFuture.abandon`
cancels a queued request (its batch skips it) and stops a running one at its
batch's next decoding step (greedy and sampling), so the rest of the batch
decodes without it and a batch whose clients have all gone ends;
:attr:`EngineStats.cancelled` counts both.
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Final, final

import torch
from torch import Tensor

from speechmapper_plugin.audio import SAMPLE_RATE
from speechmapper_plugin.audio.segments import Segment, SegmenterConfig, make_segmenter
from speechmapper_plugin.audio.stream import stream_audio
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.serving.errors import bad_request
from speechmapper_plugin.speech_llm import (
    AudioInputError,
    PipelineResult,
    SkippedInput,
    SpeechMapperPipeline,
)
from speechmapper_plugin.speech_llm.long_form import longest_segment
from speechmapper_plugin.speech_llm.text_stream import TextDeltas, TokenSink

_MAX_VARIANTS: Final = 64
"""Pipelines kept per (generation settings, system prompt); beyond, the cache
starts over (a variant shares the models: ``pipeline.with_options``)."""


@dataclass(frozen=True)
class Sampling:
    """A request's decoding options, OpenAI's names; ``None`` keeps the
    server's generation config (greedy unless configured otherwise)."""

    temperature: float | None = None
    """0: greedy; above 0: sampling at this temperature (with ``top_p``)."""

    top_p: float | None = None
    """Nucleus sampling's ``p`` (sampling at temperature 1 if no temperature)."""

    max_tokens: int | None = None
    """At most this many generated tokens (lowers the config's ``max_new_tokens``)."""

    seed: int | None = None
    """Seeds torch's generator before a sampled request, which then runs alone."""

    def check(self) -> None:
        """:raises ApiError: 400 naming the field out of range."""
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise bad_request(
                f"`temperature` must be between 0 and 2, but is {self.temperature}.",
                param="temperature",
            )
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise bad_request(
                f"`top_p` must be in (0, 1], but is {self.top_p}.", param="top_p"
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise bad_request(
                f"`max_tokens` must be positive, but is {self.max_tokens}.",
                param="max_tokens",
            )

    def apply(self, base: GenerationConfig) -> GenerationConfig:
        """``base`` with these options."""
        config = copy.deepcopy(base)
        sampling = (self.temperature is not None and self.temperature > 0) or (
            self.temperature is None and self.top_p is not None
        )
        if self.temperature == 0:
            config.generator = "beam_search"
            config.beam_size = 1
        elif sampling:
            config.generator = "sampling"
            config.beam_size = 1
            config.temperature = self.temperature or 1.0
            config.sampler.name = "top_p"
            config.sampler.top_p = dataclasses.replace(
                config.sampler.top_p, p=1.0 if self.top_p is None else self.top_p
            )
        elif self.top_p is not None and config.generator == "sampling":
            config.sampler.top_p = dataclasses.replace(
                config.sampler.top_p, p=self.top_p
            )
        if self.max_tokens is not None:
            # The server's budget is a cap: a request may only lower it.
            config.max_new_tokens = min(self.max_tokens, base.max_new_tokens)
        config.check()
        return config


@dataclass(frozen=True)
class SpeechRequest:
    """One audio with its instruction: what the pipeline's ``run`` takes."""

    waveform: Tensor
    """Mono float32 at 16 kHz."""

    instruction: str
    """The user turn, ``<speech>`` exactly once where the audio goes."""

    system: str | None = None
    """The system prompt (default: the pipeline's)."""

    sampling: Sampling = field(default_factory=Sampling)

    @property
    def seconds(self) -> float:
        return self.waveform.numel() / SAMPLE_RATE


@dataclass
class EngineStats:
    """What the worker has done (``/health`` shows it)."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    failures: int = 0
    cancelled: int = 0
    """Requests abandoned by their client before their answer was complete:
    skipped before their batch ran, or stopped mid-decoding."""


@final
class RequestFuture(Future[PipelineResult]):
    """A submitted request's result; :meth:`abandon` when nobody will read it.

    ``Future.cancel`` cannot stop a request its batch already runs (nor can
    cancelling ``asyncio.wrap_future(future)``): :meth:`abandon` can.
    """

    def __init__(self) -> None:
        super().__init__()
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        """The client is gone: a queued request is cancelled (its batch skips
        it); a running one stops at its batch's next decoding step (greedy
        and sampling; beam search runs to its end), and its result then has
        the tokens it had and ``stop_reason="cancelled"``."""
        self._abandoned.set()
        self.cancel()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()


@dataclass
class _Job:
    request: SpeechRequest
    pipeline: SpeechMapperPipeline
    key: tuple[str, str | None]
    on_token: TokenSink | None = None
    future: RequestFuture = field(default_factory=RequestFuture)
    streamed: bool = False
    """Some of its tokens went to ``on_token``: it cannot be retried."""

    def give(self, token: int) -> None:
        """``token`` to the request's sink; a failing sink (its client gone)
        is dropped and the request abandoned."""
        if self.on_token is None:
            return
        self.streamed = True
        try:
            self.on_token(token)
        except Exception:
            self.on_token = None
            self.future.abandon()


_STOP: Final = object()


class SpeechEngine:
    """Batches requests onto one :class:`SpeechMapperPipeline` in a worker thread.

    :param model_id: The name clients call the model by (``/v1/models``).
    :param max_batch_size: Requests decoded together at most.
    :param max_wait_ms: How long the first request of a batch waits for others.
    :param step_delay_ms: A pause after every decoding step of a batch that
        streams (to watch or test streaming on models that decode in
        microseconds); 0 in service.
    """

    def __init__(
        self,
        pipeline: SpeechMapperPipeline,
        *,
        model_id: str,
        max_batch_size: int = 8,
        max_wait_ms: float = 10.0,
        step_delay_ms: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(
                f"`max_batch_size` must be positive, but is {max_batch_size}."
            )
        if max_wait_ms < 0:
            raise ValueError(
                f"`max_wait_ms` must not be negative, but is {max_wait_ms}."
            )
        if step_delay_ms < 0:
            raise ValueError(
                f"`step_delay_ms` must not be negative, but is {step_delay_ms}."
            )

        self.pipeline = pipeline
        self.model_id = model_id
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.step_delay = step_delay_ms / 1000.0
        self.stats = EngineStats()

        self._variants: dict[tuple[str, str | None], SpeechMapperPipeline] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[object] = queue.Queue()
        self._worker = threading.Thread(
            target=self._loop, name="speechmapper-engine", daemon=True
        )
        self._worker.start()

    # -- the request side ----------------------------------------------------

    def check(self, request: SpeechRequest) -> None:
        """Refuse what the models cannot take, before it is queued.

        :raises ApiError: 400 for an instruction without ``<speech>`` exactly
            once, a system prompt holding it, out-of-range sampling options,
            or audio too short or too long for the projector and the LLM.
        """
        self._checked(request)

    def split(
        self, request: SpeechRequest, segmenter: SegmenterConfig
    ) -> list[tuple[Segment, SpeechRequest]]:
        """The request whole if the models take it, else cut into segments
        they take (long-form: the segments' answers are joined); segments too
        short for the projector (a last window's tail) are left out.

        :raises ApiError: 400 as :meth:`check`, for what segmenting cannot fix.
        """
        request.sampling.check()
        pipeline, _ = self._variant(request)
        whole = Segment(0, request.waveform.numel())
        try:
            pipeline.check_audio(whole.end, request.instruction)
            return [(whole, request)]
        except AudioInputError as ex:
            if whole.end < pipeline.min_num_samples:
                raise bad_request(str(ex), code=ex.code) from None
        try:
            most = longest_segment(pipeline, request.instruction, segmenter.max_seconds)
        except ValueError as ex:
            raise bad_request(str(ex), code="too_long_audio") from None
        segments = make_segmenter(segmenter).segments(
            stream_audio(request.waveform), max_samples=most
        )
        return [
            (
                s,
                dataclasses.replace(
                    request, waveform=request.waveform[s.start : s.end]
                ),
            )
            for s in segments
            if s.num_samples >= pipeline.min_num_samples
        ]

    def submit(
        self, request: SpeechRequest, *, on_token: TokenSink | None = None
    ) -> RequestFuture:
        """Queue a request (checked first); the future holds its result
        (:meth:`RequestFuture.abandon` it when the client goes away).

        :param on_token: Takes each token of the answer as it is generated,
            in the worker thread (it must not block); all of them come before
            the future is done. Decode them with :meth:`text_deltas`.
        """
        pipeline, key = self._checked(request)
        if not self.alive:
            raise RuntimeError("The engine's worker has stopped.")

        job = _Job(request, pipeline, key, on_token)
        self._queue.put(job)
        return job.future

    def generate(self, request: SpeechRequest) -> PipelineResult:
        """:meth:`submit` and wait."""
        return self.submit(request).result()

    def text_deltas(self) -> TextDeltas:
        """An incremental decoder of one answer's tokens (``on_token``'s)
        into the pieces of its text."""
        return self.pipeline.text_deltas()

    @property
    def alive(self) -> bool:
        return self._worker.is_alive()

    def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        self._queue.put(_STOP)
        self._worker.join()

    # -- internals -----------------------------------------------------------

    def _variant(
        self, request: SpeechRequest
    ) -> tuple[SpeechMapperPipeline, tuple[str, str | None]]:
        """The pipeline for the request's generation settings and system prompt
        (sharing the models), its instruction checked."""
        config = request.sampling.apply(self.pipeline.generation)
        system = request.system
        key = (repr(config), system)
        with self._lock:
            pipeline = self._variants.get(key)
            if pipeline is None:
                pipeline = self._make_variant(config, system)
                if len(self._variants) >= _MAX_VARIANTS:
                    self._variants.clear()
                self._variants[key] = pipeline
        try:
            pipeline.encode_prompt(request.instruction)
        except ValueError as ex:
            raise bad_request(str(ex), code="invalid_instruction") from None
        return pipeline, key

    def _make_variant(
        self, config: GenerationConfig, system: str | None
    ) -> SpeechMapperPipeline:
        if system is None or system.strip() == "":
            system = self.pipeline.system_prompt
        try:
            return self.pipeline.with_options(generation=config, system_prompt=system)
        except ValueError as ex:
            raise bad_request(
                str(ex), param="messages", code="invalid_instruction"
            ) from None

    def _checked(
        self, request: SpeechRequest
    ) -> tuple[SpeechMapperPipeline, tuple[str, str | None]]:
        request.sampling.check()
        pipeline, key = self._variant(request)
        try:
            pipeline.check_audio(request.waveform.numel(), request.instruction)
        except AudioInputError as ex:
            raise bad_request(str(ex), code=ex.code) from None
        return pipeline, key

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            jobs = [first]
            stop = False
            deadline = time.monotonic() + self.max_wait
            while len(jobs) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Job)
                jobs.append(item)

            for group in _groups(jobs):
                try:
                    self._answer(group)
                except Exception as ex:  # never seen: the worker must outlive it
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(ex)
            if stop:
                return

    def _answer(self, jobs: list[_Job]) -> None:
        """One ``pipeline.run`` for ``jobs`` (same settings); a failure of the
        batch is retried one by one, so it only fails the request that causes it."""
        running = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        self.stats.cancelled += len(jobs) - len(running)
        jobs = running
        if jobs:
            self._settle(jobs, retry_alone=len(jobs) > 1)

    def _settle(self, jobs: list[_Job], *, retry_alone: bool) -> None:
        results: list[PipelineResult | SkippedInput | Exception]
        try:
            results = list(self._run(jobs))
        except Exception as ex:
            if retry_alone:
                # A request whose tokens were streamed cannot start over.
                for job in jobs:
                    if job.streamed:
                        self.stats.failures += 1
                        job.future.set_exception(ex)
                    else:
                        self._settle([job], retry_alone=False)
                return
            results = [ex] * len(jobs)

        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, PipelineResult):
                if result.stop_reason == "cancelled":
                    self.stats.cancelled += 1
                job.future.set_result(result)
            else:
                self.stats.failures += 1
                error = result.error if isinstance(result, SkippedInput) else result
                job.future.set_exception(error)

    def _run(self, jobs: list[_Job]) -> list[PipelineResult | SkippedInput]:
        self.stats.requests += len(jobs)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))

        seed = jobs[0].request.sampling.seed
        pipeline = jobs[0].pipeline
        if seed is not None and pipeline.generation.generator == "sampling":
            torch.manual_seed(seed)

        streaming = any(job.on_token is not None for job in jobs)

        def on_tokens(tokens: dict[int, int]) -> None:
            for index, token in tokens.items():
                jobs[index].give(token)
            if self.step_delay:
                time.sleep(self.step_delay)

        return pipeline.run(
            [job.request.waveform for job in jobs],
            [job.request.instruction for job in jobs],
            on_error="skip",
            batch_size=len(jobs),
            on_tokens=on_tokens if streaming else None,
            cancelled=lambda index: jobs[index].future.abandoned,
        )


def _groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs that can share a forward pass, in arrival order: same settings and
    system prompt; a seeded sampled job alone."""
    groups: dict[tuple[str, str | None], list[_Job]] = {}
    alone: list[list[_Job]] = []
    for job in jobs:
        if (
            job.request.sampling.seed is not None
            and job.pipeline.generation.generator == "sampling"
        ):
            alone.append([job])
        else:
            groups.setdefault(job.key, []).append(job)
    return [*groups.values(), *alone]
