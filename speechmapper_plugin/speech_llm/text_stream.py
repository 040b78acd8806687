"""An answer's text while it is generated: tokens in, text pieces out.

:class:`TextDeltas` turns tokens given one at a time into the pieces of text
they add (never half a multi-byte character); :class:`AnswerStream` is one
answer's pieces as an iterator, fed from a generation running in a thread.
The pipeline (:meth:`SpeechMapperPipeline.stream`) and the server's
streamed chat completions both use them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import final

import torch
from fairseq2.data.tokenizers import TokenDecoder
from typing_extensions import override

from speechmapper_plugin.speech_llm.pipeline_result import PipelineResult


@final
class TextDeltas:
    """The text each new token adds to an answer, as the pipeline decodes it
    (special tokens dropped, stripped).

    Each call decodes the answer so far and gives what it adds to the text
    given before; a token that ends inside a multi-byte character (decoded
    as U+FFFD) adds nothing until the character is complete. The pieces
    join to the decoded text of all tokens (:meth:`finish` gives any rest).
    """

    def __init__(self, decoder: TokenDecoder) -> None:
        self._decoder = decoder
        self._tokens: list[int] = []
        self.text = ""
        """The text given so far."""

    def push(self, token: int) -> str:
        """The text ``token`` adds; ``""`` when it adds none yet."""
        self._tokens.append(token)
        text = self._decoder(torch.tensor(self._tokens, dtype=torch.int64)).strip()
        if text.endswith("\ufffd") or not text.startswith(self.text):
            return ""
        piece = text[len(self.text) :]
        self.text = text
        return piece

    def finish(self, text: str) -> str:
        """What is left of the final ``text`` after the pieces given (all of
        it when nothing was streamed: beam search). A decoder that rewrites
        text given before (never seen) would make the pieces differ from
        ``text``: then ``text`` is returned whole."""
        if text.startswith(self.text):
            rest = text[len(self.text) :]
        else:
            rest = text
        self.text = text
        return rest


TokenSink = Callable[[int], None]
"""Takes one token of the answer, as soon as it is generated."""


StreamGenerate = Callable[[TokenSink, Callable[[], bool]], PipelineResult]
"""Generates one answer, giving each token to the sink; it asks the second
argument after every step whether the stream was closed, and then stops
(its result's ``stop_reason`` is ``"cancelled"``)."""


@dataclass(frozen=True)
class _Done:
    result: PipelineResult | None
    error: BaseException | None


@final
class AnswerStream(Iterator[str]):
    """The text pieces of one answer while it is generated (joined: the
    answer's text); :attr:`result` holds the full result once iteration ends.

    ``generate`` runs in a thread: it is given a sink for the answer's
    tokens and whether the stream is closed, and returns the result; an
    error it raises is raised by the iteration. :meth:`close` (or leaving a
    ``with`` block) stops it after its current decoding step (beam search,
    which never asks, runs to its end).
    """

    stopped: bool
    """The generation was stopped by :meth:`close` before it ended."""

    def __init__(self, generate: StreamGenerate, deltas: TextDeltas) -> None:
        self.result: PipelineResult | None = None
        self.stopped = False
        self._deltas = deltas
        self._items: queue.SimpleQueue[int | _Done] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._ended = False
        self._thread = threading.Thread(
            target=self._work, args=(generate,), name="answer-stream", daemon=True
        )
        self._thread.start()

    def _work(self, generate: StreamGenerate) -> None:
        try:
            result = generate(self._items.put, self._closed.is_set)
        except BaseException as error:  # raised in the consumer's thread
            self._items.put(_Done(None, error))
            return
        if result.stop_reason == "cancelled":
            self.stopped = True
        else:
            self._items.put(_Done(result, None))

    @override
    def __next__(self) -> str:
        while not self._ended:
            item = self._items.get()
            if isinstance(item, int):
                piece = self._deltas.push(item)
                if piece:
                    return piece
                continue
            self._ended = True
            if item.error is not None:
                raise item.error
            self.result = item.result
            if item.result is not None:
                rest = self._deltas.finish(item.result.text)
                if rest:
                    return rest
        raise StopIteration

    def close(self) -> None:
        """Stop the generation after its current step and end the iteration;
        returns once the generation has ended (the models are free)."""
        self._closed.set()
        self._ended = True
        if threading.current_thread() is not self._thread:  # not from a sink
            self._thread.join()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
