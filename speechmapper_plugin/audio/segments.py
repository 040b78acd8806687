"""Cutting a long recording into segments a projector can take.

Two segmenters read the recording as a stream of 16 kHz chunks
(:func:`~speechmapper_plugin.audio.stream.stream_audio`) and yield segments
as they go, so their memory does not grow with the recording:

- :class:`FixedWindows`: consecutive windows of ``max_seconds`` that cover the
  audio exactly (fixed 30 s windows were the most robust on the IWSLT 2026
  long-form track);
- :class:`VadSegmenter`: Silero VAD's speech regions (the ``silero-vad``
  package ships its model: offline), merged in order into segments of at
  most ``max_seconds``; a region longer than that is cut into equal parts.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from speechmapper_plugin.audio.resample import TARGET_SAMPLE_RATE

_VAD_WINDOW = 512
"""Samples per Silero VAD decision at 16 kHz (32 ms)."""


@dataclass(frozen=True)
class Segment:
    """Samples ``[start, end)`` of the 16 kHz recording."""

    start: int
    end: int

    @property
    def start_seconds(self) -> float:
        return self.start / TARGET_SAMPLE_RATE

    @property
    def end_seconds(self) -> float:
        return self.end / TARGET_SAMPLE_RATE

    @property
    def num_samples(self) -> int:
        return self.end - self.start


@dataclass
class SegmenterConfig:
    """How long recordings are cut (``generate``'s and the server's option)."""

    kind: Literal["fixed", "vad"] = "fixed"
    """``fixed``: consecutive windows; ``vad``: speech regions (Silero VAD)."""

    max_seconds: float = 30.0
    """The longest segment (lowered to what the projector and LLM take)."""

    vad_threshold: float = 0.5
    """Speech probability that starts a region (it ends below ``threshold - 0.15``)."""

    min_speech_ms: int = 250
    """Shorter regions are dropped (clicks, breaths)."""

    min_silence_ms: int = 300
    """A pause this long ends a region."""

    speech_pad_ms: int = 100
    """Added on each side of a region (not beyond its pauses)."""

    speech_pad_end_ms: int | None = None
    """Added after a region instead of ``speech_pad_ms`` (``None``: the
    same). A model trained on single utterances saw almost no silence
    before the speech but the synthesiser's or recorder's quiet tail after
    it: a short lead and a longer tail reproduce that (see the README's
    "Long recordings")."""

    def check(self) -> None:
        if self.kind not in ("fixed", "vad"):
            raise ValueError(f"`kind` must be 'fixed' or 'vad', but is {self.kind!r}.")
        if not self.max_seconds > 0:
            raise ValueError(
                f"`max_seconds` must be positive, but is {self.max_seconds}."
            )
        if not 0.15 < self.vad_threshold < 1:
            raise ValueError(
                f"`vad_threshold` must be in (0.15, 1), but is {self.vad_threshold}."
            )
        pads = {"speech_pad_ms": self.speech_pad_ms}
        if self.speech_pad_end_ms is not None:
            pads["speech_pad_end_ms"] = self.speech_pad_end_ms
        if min(self.min_speech_ms, self.min_silence_ms, *pads.values()) < 0:
            raise ValueError("The VAD's durations must not be negative.")
        for name, pad in pads.items():
            if pad > self.min_silence_ms:
                raise ValueError(
                    f"`{name}` ({pad}) must not exceed `min_silence_ms` ({self.min_silence_ms}): padding would reach into the next region."
                )

    @property
    def end_pad_ms(self) -> int:
        """The padding after a region."""
        if self.speech_pad_end_ms is None:
            return self.speech_pad_ms
        return self.speech_pad_end_ms


class Segmenter(Protocol):
    def segments(
        self, chunks: Iterable[Tensor], *, max_samples: int
    ) -> Iterator[Segment]:
        """Segments of at most ``max_samples``, in order, as ``chunks`` pass."""
        ...


def make_segmenter(config: SegmenterConfig) -> Segmenter:
    config.check()
    if config.kind == "vad":
        return VadSegmenter(config)
    return FixedWindows()


class FixedWindows:
    """Consecutive windows of ``max_samples``; the last one is what is left."""

    def segments(
        self, chunks: Iterable[Tensor], *, max_samples: int
    ) -> Iterator[Segment]:
        _check_max(max_samples)
        total = 0
        start = 0
        for chunk in chunks:
            total += chunk.numel()
            while total - start >= max_samples:
                yield Segment(start, start + max_samples)
                start += max_samples
        if total > start:
            yield Segment(start, total)


class VadSegmenter:
    """Silero VAD speech regions merged into segments of at most ``max_samples``."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig(kind="vad")
        self.config.check()

    def segments(
        self, chunks: Iterable[Tensor], *, max_samples: int
    ) -> Iterator[Segment]:
        _check_max(max_samples)
        current: Segment | None = None
        for region in self.speech_regions(chunks):
            for piece in _split(region, max_samples):
                if current is not None and piece.end - current.start <= max_samples:
                    current = Segment(current.start, piece.end)
                    continue
                if current is not None:
                    yield current
                current = piece
        if current is not None:
            yield current

    def speech_regions(self, chunks: Iterable[Tensor]) -> Iterator[Segment]:
        """Silero VAD's speech regions, padded, in order (hysteresis as in
        ``silero_vad.get_speech_timestamps``, run online)."""
        config = self.config
        ms = TARGET_SAMPLE_RATE // 1000
        min_speech = config.min_speech_ms * ms
        min_silence = config.min_silence_ms * ms
        pad = config.speech_pad_ms * ms
        pad_end = config.end_pad_ms * ms
        on = config.vad_threshold
        off = on - 0.15

        model, lock = _silero()
        start: int | None = None
        silence_from: int | None = None
        last_end = 0  # where the previous region's padding ended
        position = 0  # samples seen in full windows
        leftover = torch.zeros(0)

        def region(begin: int, end: int) -> Segment | None:
            nonlocal last_end
            if end - begin < min_speech:
                return None
            padded = Segment(max(begin - pad, last_end), end + pad_end)
            last_end = padded.end
            return padded

        with lock, torch.inference_mode():
            model.reset_states()
            for chunk in chunks:
                samples = torch.cat([leftover, chunk.to(torch.float32).reshape(-1)])
                usable = samples.numel() - samples.numel() % _VAD_WINDOW
                leftover = samples[usable:]
                for offset in range(0, usable, _VAD_WINDOW):
                    window = samples[offset : offset + _VAD_WINDOW]
                    prob = float(model(window, TARGET_SAMPLE_RATE))
                    here = position
                    position += _VAD_WINDOW
                    if prob >= on:
                        silence_from = None
                        if start is None:
                            start = here
                    elif start is not None and prob < off:
                        if silence_from is None:
                            silence_from = here
                        if position - silence_from >= min_silence:
                            found = region(start, silence_from)
                            start = silence_from = None
                            if found is not None:
                                yield found
            total = position + leftover.numel()
            if start is not None:
                end = silence_from if silence_from is not None else total
                found = region(start, end)
                if found is not None:
                    yield Segment(found.start, min(found.end, total))


def cut(chunks: Iterable[Tensor], segments: Iterable[Segment]) -> Iterator[Tensor]:
    """The audio of each segment (in order, not overlapping) from a stream of
    chunks, holding at most a segment and a chunk."""
    stream = iter(chunks)
    buffer = torch.zeros(0)
    offset = 0  # the recording's sample index of buffer[0]
    for segment in segments:
        if segment.start < offset:
            raise ValueError("Segments must be in order and must not overlap.")
        while offset + buffer.numel() < segment.end:
            chunk = next(stream, None)
            if chunk is None:
                break
            buffer = torch.cat([buffer, chunk])
        start = segment.start - offset
        yield buffer[start : segment.end - offset].clone()
        drop = min(segment.end - offset, buffer.numel())
        buffer = buffer[drop:]
        offset += drop


def _split(region: Segment, max_samples: int) -> list[Segment]:
    """``region`` in equal parts of at most ``max_samples``."""
    parts = math.ceil(region.num_samples / max_samples)
    bounds = [region.start + region.num_samples * i // parts for i in range(parts + 1)]
    return [Segment(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


def _check_max(max_samples: int) -> None:
    if max_samples < 1:
        raise ValueError(f"`max_samples` must be positive, but is {max_samples}.")


@cache
def _silero() -> tuple[Any, threading.Lock]:
    """Silero VAD's model (loaded once; stateful, hence the lock)."""
    from silero_vad import load_silero_vad

    return load_silero_vad(), threading.Lock()
