"""Long-form inference: a recording longer than the projector's window, cut
into segments, decoded in batches and joined.

The recording is read twice as a stream of chunks
(:func:`~speechmapper_plugin.audio.stream.stream_audio`): once by the
segmenter (fixed windows or Silero VAD, :class:`SegmenterConfig`), once to
cut the segments' audio, ``batch_size`` segments at a time. Neither pass
holds more than a chunk, the segments of one batch and the segment list, so
memory does not grow with the recording (files in any format libsndfile
reads are streamed, from disk or their bytes; in-memory arrays are only
cut; see :mod:`speechmapper_plugin.audio.stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import Tensor

from speechmapper_plugin.audio.resample import TARGET_SAMPLE_RATE
from speechmapper_plugin.audio.segments import (
    Segment,
    SegmenterConfig,
    cut,
    make_segmenter,
)
from speechmapper_plugin.audio.stream import (
    DEFAULT_CHUNK_SAMPLES,
    is_streamable,
    stream_audio,
)
from speechmapper_plugin.speech_llm.audio_inputs import (
    AudioInput,
    AudioInputError,
    load_input,
)
from speechmapper_plugin.speech_llm.pipeline import SpeechMapperPipeline
from speechmapper_plugin.speech_llm.pipeline_result import (
    PipelineResult,
    SkippedInput,
)


@dataclass(frozen=True)
class TimedSegment:
    """One segment's answer with where it is in the recording."""

    start: float
    """Seconds from the start of the recording."""

    end: float

    result: PipelineResult | SkippedInput
    """A :class:`SkippedInput` for a segment the models cannot take (a tail
    shorter than the projector's shortest input)."""

    @property
    def text(self) -> str:
        return "" if isinstance(self.result, SkippedInput) else self.result.text


@dataclass(frozen=True)
class LongFormResult:
    segments: list[TimedSegment]

    @property
    def text(self) -> str:
        """The segments' answers joined with spaces (empty ones left out)."""
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def skipped(self) -> int:
        return sum(isinstance(s.result, SkippedInput) for s in self.segments)


def longest_segment(
    pipeline: SpeechMapperPipeline, instruction: str, max_seconds: float
) -> int:
    """The most 16 kHz samples, up to ``max_seconds``, that the projector and
    the LLM's context take with ``instruction`` (bisecting the pipeline's own
    check, so it holds for every projector kind).

    :raises ValueError: if even the shortest usable audio does not fit.
    """
    upper = max(1, int(max_seconds * TARGET_SAMPLE_RATE))
    if _fits(pipeline, upper, instruction):
        return upper
    low = pipeline.min_num_samples
    if low > upper or not _fits(pipeline, low, instruction):
        raise ValueError(
            f"No segment of at most {max_seconds} s fits the projector and the LLM's context with this instruction."
        )
    high = upper  # low fits, high does not
    while high - low > 1:
        middle = (low + high) // 2
        if _fits(pipeline, middle, instruction):
            low = middle
        else:
            high = middle
    return low


def run_long_form(
    pipeline: SpeechMapperPipeline,
    audio: AudioInput,
    instruction: str,
    *,
    segmenter: SegmenterConfig | None = None,
    batch_size: int | None = None,
    sample_rate: int | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> LongFormResult:
    """``instruction`` answered on each segment of a recording of any length.

    :param audio: A path or encoded bytes (streamed), or a
        waveform (``sample_rate``, default 16 kHz).
    :param segmenter: How to cut (default: fixed 30 s windows); its
        ``max_seconds`` is lowered to what the models take.
    :raises AudioInputError: if the audio cannot be read.
    """
    config = segmenter or SegmenterConfig()
    config.check()
    batch_size = pipeline.batch_size if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be positive, but is {batch_size}.")
    pipeline.encode_prompt(instruction)

    max_samples = longest_segment(pipeline, instruction, config.max_seconds)
    chunks = _chunk_source(audio, sample_rate, chunk_samples)

    segments = list(make_segmenter(config).segments(chunks(), max_samples=max_samples))

    timed: list[TimedSegment] = []
    batch: list[tuple[Segment, Tensor]] = []

    def flush() -> None:
        results = pipeline.run(
            [waveform for _, waveform in batch],
            instruction,
            on_error="skip",
            batch_size=batch_size,
            names=[
                f"segment {s.start_seconds:.2f}-{s.end_seconds:.2f} s" for s, _ in batch
            ],
        )
        timed.extend(
            TimedSegment(s.start_seconds, s.end_seconds, r)
            for (s, _), r in zip(batch, results, strict=True)
        )
        batch.clear()

    for segment, waveform in zip(segments, cut(chunks(), segments), strict=True):
        batch.append((segment, waveform))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()

    return LongFormResult(timed)


def _chunk_source(
    audio: AudioInput, sample_rate: int | None, chunk_samples: int
) -> Callable[[], Iterator[Tensor]]:
    """A function giving the recording's chunks anew on each call."""
    if is_streamable(audio):
        source = audio
        return lambda: stream_audio(source, chunk_samples=chunk_samples)  # type: ignore[arg-type]

    waveform = load_input(audio, where="the recording", sample_rate=sample_rate)
    return lambda: stream_audio(waveform, chunk_samples=chunk_samples)


def _fits(pipeline: SpeechMapperPipeline, num_samples: int, instruction: str) -> bool:
    try:
        pipeline.check_audio(num_samples, instruction)
    except AudioInputError:
        return False
    return True
