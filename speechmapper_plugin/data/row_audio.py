"""Loading the audio of one manifest row, turning every failure into a :class:`BadRow`.

Decoding, downmixing and resampling are the audio front end's
(:mod:`speechmapper_plugin.audio`); this module only classifies what can go
wrong so that a pipeline over millions of rows counts and skips bad ones
instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from speechmapper_plugin.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    AudioError,
    decode_audio,
    resample,
    to_mono,
)
from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.reasons import (
    BAD_SEGMENT,
    EMPTY_AUDIO,
    INVALID_AUDIO,
    LENGTH_MISMATCH,
    MISSING_FILE,
    TOO_SHORT_AUDIO,
    UNDECODABLE_AUDIO,
    UNREADABLE_FILE,
)
from speechmapper_plugin.data.usability import audio_length_problem
from speechmapper_plugin.input_checks import is_finite

LENGTH_TOLERANCE_S = 0.01
"""Declared lengths may differ from the decoded audio by this many seconds;
a segment may overrun the end of its file by as much (it is cut at the end)."""


@dataclass(frozen=True)
class RowAudio:
    """The decoded audio of a row, as the speech encoder consumes it."""

    row: ManifestRow

    waveform: Tensor
    """Mono float32 at :data:`SAMPLE_RATE`. *Shape:* ``[samples]``."""

    source_sample_rate: int
    source_num_samples: int
    """Samples at the source rate: of the segment, for a segment row."""

    source_num_channels: int

    @property
    def duration(self) -> float:
        return self.source_num_samples / self.source_sample_rate


def check_audio_file(row: ManifestRow) -> BadRow | None:
    """The cheap checks: the file exists, is a readable regular file, is not empty."""
    path = row.audio

    try:
        stat = path.stat()
    except FileNotFoundError:
        return BadRow(row.line_no, row.id, MISSING_FILE, f"{path} does not exist")
    except OSError as ex:
        return BadRow(
            row.line_no, row.id, UNREADABLE_FILE, f"{path}: {ex.strerror or ex}"
        )

    if not path.is_file():
        return BadRow(
            row.line_no, row.id, UNREADABLE_FILE, f"{path} is not a regular file"
        )

    if stat.st_size == 0:
        return BadRow(row.line_no, row.id, EMPTY_AUDIO, f"{path} is an empty file")

    return None


def check_declared_length(row: ManifestRow, *, min_num_samples: int) -> BadRow | None:
    """Zero or too-short lengths as declared by the manifest (no decoding)."""
    if row.is_segment and row.duration == 0:
        return BadRow(
            row.line_no, row.id, BAD_SEGMENT, "the segment's duration is zero"
        )

    if row.num_samples == 0 or row.duration == 0:
        return BadRow(
            row.line_no, row.id, EMPTY_AUDIO, "the manifest declares zero length"
        )

    if row.duration is not None and row.duration * SAMPLE_RATE < min_num_samples:
        return BadRow(
            row.line_no,
            row.id,
            TOO_SHORT_AUDIO,
            f"declared duration {row.duration:.4f} s is under the {min_num_samples / SAMPLE_RATE:.4f} s the encoder needs",
        )

    return None


def load_row_audio(row: ManifestRow, *, min_num_samples: int) -> RowAudio | BadRow:
    """Decode, downmix and resample to 16 kHz; or say why the row is unusable.

    :param min_num_samples: The shortest usable waveform at 16 kHz (see
        ``SpeechFeatureExtractor.min_num_samples``).
    """
    bad = check_audio_file(row)
    if bad is not None:
        return bad

    try:
        decoded = decode_audio(row.audio)
    except OSError as ex:
        return BadRow(
            row.line_no, row.id, UNREADABLE_FILE, f"{row.audio}: {ex.strerror or ex}"
        )
    except AudioDecodeError as ex:
        # A well-formed header with zero frames is empty audio, not corruption.
        if ex.reason.startswith("it holds no samples") or ex.reason.startswith(
            "it is empty"
        ):
            return BadRow(row.line_no, row.id, EMPTY_AUDIO, str(ex))
        return BadRow(row.line_no, row.id, UNDECODABLE_AUDIO, str(ex))
    except AudioError as ex:
        return BadRow(row.line_no, row.id, INVALID_AUDIO, str(ex))

    samples = decoded.waveform
    if row.is_segment:
        bounds = segment_bounds(row, samples.size(0), decoded.sample_rate)
        if isinstance(bounds, BadRow):
            return bounds
        samples = samples[bounds[0] : bounds[1]]

    try:
        waveform = to_mono(samples, channel_dim=1)
        if not is_finite(waveform):
            return BadRow(
                row.line_no,
                row.id,
                INVALID_AUDIO,
                "the audio holds NaN or infinite samples",
            )
        waveform = resample(waveform, decoded.sample_rate, SAMPLE_RATE)
    except AudioError as ex:
        return BadRow(row.line_no, row.id, INVALID_AUDIO, str(ex))

    too_short = audio_length_problem(
        waveform.numel(),
        min_num_samples,
        gives="no speech-encoder frame",
        needed_by="the speech encoder needs",
    )
    if too_short is not None:
        return too_short.bad_row(row.line_no, row.id)

    return RowAudio(
        row=row,
        waveform=waveform,
        source_sample_rate=decoded.sample_rate,
        source_num_samples=samples.size(0),
        source_num_channels=decoded.num_channels,
    )


def segment_bounds(
    row: ManifestRow, num_frames: int, sample_rate: int
) -> tuple[int, int] | BadRow:
    """``[start, stop)`` in frames of the file for a segment row, or why the
    segment does not lie inside the file's ``num_frames``.

    ``start = round(offset * sr)``, ``stop = start + round(duration * sr)``;
    without a duration the segment runs to the end. A segment may overrun the
    end by :data:`LENGTH_TOLERANCE_S` (alignments are rounded) and is then cut.
    """
    offset = row.offset or 0.0
    file_seconds = num_frames / sample_rate

    start = round(offset * sample_rate)
    if start >= num_frames:
        return BadRow(
            row.line_no,
            row.id,
            BAD_SEGMENT,
            f"the segment starts at {offset:.3f} s, at or after the end of {row.audio} ({file_seconds:.3f} s)",
        )

    if row.duration is None:
        return start, num_frames

    stop = start + round(row.duration * sample_rate)
    if stop == start:
        return BadRow(
            row.line_no,
            row.id,
            BAD_SEGMENT,
            f"the segment's duration {row.duration} s is under one sample at {sample_rate} Hz",
        )

    if stop > num_frames:
        if stop - num_frames > LENGTH_TOLERANCE_S * sample_rate:
            return BadRow(
                row.line_no,
                row.id,
                BAD_SEGMENT,
                f"the segment ends at {offset + row.duration:.3f} s, after the end of {row.audio} ({file_seconds:.3f} s)",
            )
        stop = num_frames

    return start, stop


def check_length_matches(audio: RowAudio) -> BadRow | None:
    """Declared ``num_samples``/``duration`` against the decoded audio.

    ``num_samples`` may count samples at the file's rate or at 16 kHz (both
    conventions exist); either matches.
    """
    row = audio.row
    problems = []

    if row.num_samples is not None:
        candidates = {
            audio.source_num_samples: audio.source_sample_rate,
            audio.waveform.numel(): SAMPLE_RATE,
        }
        if not any(
            abs(row.num_samples - n) <= LENGTH_TOLERANCE_S * sr
            for n, sr in candidates.items()
        ):
            problems.append(
                f"declared num_samples {row.num_samples}, decoded {audio.source_num_samples} at {audio.source_sample_rate} Hz"
            )

    if (
        row.duration is not None
        and abs(row.duration - audio.duration) > LENGTH_TOLERANCE_S
    ):
        problems.append(
            f"declared duration {row.duration:.3f} s, decoded {audio.duration:.3f} s"
        )

    if not problems:
        return None

    return BadRow(row.line_no, row.id, LENGTH_MISMATCH, "; ".join(problems))
