"""Checking every row of a manifest and reporting all problems at once."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from speechmapper_plugin.audio import min_num_samples as encoder_min_num_samples
from speechmapper_plugin.data.bad_rows_tsv import count_reasons, save_bad_rows_tsv
from speechmapper_plugin.data.manifest import (
    BadRow,
    ManifestFormat,
    ManifestRow,
)
from speechmapper_plugin.data.manifest_reader import read_manifest
from speechmapper_plugin.data.row_audio import (
    check_audio_file,
    check_declared_length,
    check_length_matches,
    load_row_audio,
)
from speechmapper_plugin.data.row_checks import check_transcript, split_duplicate_ids

DEFAULT_FRAME_AVERAGING = 2
"""SpeechMapper averages encoder frames 2:1, so audio needs two encoder frames."""


def default_min_num_samples(frame_averaging: int = DEFAULT_FRAME_AVERAGING) -> int:
    """The shortest 16 kHz waveform that yields one (averaged) frame of a
    50 Hz SeamlessM4T encoder: 880 samples for 2:1 averaging, 560 without.

    The manifest check only, and exact for the paper's encoder. Other encoders
    differ by a few tens of milliseconds, which is harmless because nothing
    downstream relies on this number: extraction (and generation) skip and count
    audio by their extractor's own ``min_num_samples``
    (:class:`~speechmapper_plugin.models.speech_encoder.SpeechEncoderFeatureExtractor`).
    Whisper (50 Hz, 2:1) needs 480 samples, so this check also flags the
    30-55 ms clips Whisper could encode (stricter; no such clip holds a
    transcribed word). SeamlessM4T's length adaptor pads, so one 50 Hz frame
    gives one 6.25 Hz frame: with the grid's ``frame_averaging: 1`` it needs
    560 (``--frame-averaging 1``, exact); with 2:1 averaging it would need
    2,800, and extraction skips the 55-175 ms clips this check lets through.
    """
    return encoder_min_num_samples(2 * frame_averaging)


@dataclass
class ManifestValidationReport:
    manifest: Path
    format: ManifestFormat
    root: Path
    num_rows: int
    """Data rows in the manifest, good and bad."""

    problems: list[BadRow] = field(default_factory=list)
    """Every problem found; a row with several problems appears several times."""

    audio_checked: bool = True

    sample_rates: Counter[int] = field(default_factory=Counter)
    """Source sample rate -> number of decoded rows."""

    channels: Counter[int] = field(default_factory=Counter)
    """Source channel count -> number of decoded rows."""

    usable_seconds: float = 0.0
    """Audio of the rows without problems (decoded, or declared when not decoded)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def num_bad_rows(self) -> int:
        return len({(p.line_no, p.id) for p in self.problems})

    def counts(self) -> dict[str, int]:
        """Reason -> number of problems."""
        return count_reasons(self.problems)

    def summary_lines(self) -> list[str]:
        lines = [
            f"Manifest: {self.manifest} ({self.format}; audio root {self.root})",
            f"Rows: {self.num_rows}; bad rows: {self.num_bad_rows}",
        ]
        if self.audio_checked:
            rates = ", ".join(
                f"{sr} Hz: {n}" for sr, n in sorted(self.sample_rates.items())
            )
            chans = ", ".join(f"{c}: {n}" for c, n in sorted(self.channels.items()))
            lines.append(
                f"Sample rates: {rates or 'none decoded'} (all is resampled to 16 kHz)"
            )
            lines.append(
                f"Channels: {chans or 'none decoded'} (multichannel audio is downmixed)"
            )
        lines.append(f"Usable audio: {self.usable_seconds / 3600:.4f} h")
        if self.problems:
            lines.append("Problems by reason:")
            lines.extend(f"  {reason}: {n}" for reason, n in self.counts().items())
        return lines

    def write_tsv(self, path: Path) -> None:
        """``line``, ``id``, ``reason``, ``detail`` for every problem."""
        save_bad_rows_tsv(path, self.problems)


@dataclass(frozen=True)
class _AudioCheck:
    problem: BadRow | None
    sample_rate: int | None = None
    num_channels: int | None = None
    seconds: float = 0.0


def validate_manifest(
    path: str | Path,
    *,
    root: str | Path | None = None,
    check_audio: bool = True,
    min_num_samples: int | None = None,
    num_workers: int | None = None,
    progress: bool = False,
) -> ManifestValidationReport:
    """Check every row; never stops at the first problem.

    Always: malformed rows, empty transcripts, duplicate ids, missing,
    unreadable or empty files, zero or too-short *declared* lengths. With
    ``check_audio`` (decodes every file): undecodable, zero-length, too-short
    and NaN audio, and declared lengths that disagree with the decoded audio
    by more than 10 ms.

    :param min_num_samples: The shortest usable audio at 16 kHz; defaults to
        what the encoder needs for one frame after 2:1 averaging (880).
    :param num_workers: Threads decoding audio.
    :raises ManifestError: if the manifest cannot be read at all.
    """
    if min_num_samples is None:
        min_num_samples = default_min_num_samples()

    manifest = read_manifest(path, root=root, require_rows=False)

    report = ManifestValidationReport(
        manifest=manifest.path,
        format=manifest.format,
        root=manifest.root,
        num_rows=manifest.num_lines,
        problems=list(manifest.bad_rows),
        audio_checked=check_audio,
    )

    _, duplicates = split_duplicate_ids(manifest.rows)
    bad_lines = {d.line_no for d in duplicates}
    report.problems.extend(duplicates)

    for row in manifest.rows:
        bad = check_transcript(row)
        if bad is not None:
            report.problems.append(bad)
            bad_lines.add(row.line_no)

    def check(row: ManifestRow) -> _AudioCheck:
        if not check_audio:
            problem = check_audio_file(row) or check_declared_length(
                row, min_num_samples=min_num_samples
            )
            return _AudioCheck(problem, seconds=row.duration or 0.0)

        # The waveform is dropped here, in the worker: only numbers travel.
        audio = load_row_audio(row, min_num_samples=min_num_samples)
        if isinstance(audio, BadRow):
            return _AudioCheck(audio)
        return _AudioCheck(
            check_length_matches(audio),
            audio.source_sample_rate,
            audio.source_num_channels,
            audio.duration,
        )

    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if check_audio else 1

    start = last_print = time.monotonic()

    for i, (row, outcome) in enumerate(
        _ordered_map(check, manifest.rows, num_workers), start=1
    ):
        if outcome.sample_rate is not None:
            report.sample_rates[outcome.sample_rate] += 1
        if outcome.num_channels is not None:
            report.channels[outcome.num_channels] += 1
        if outcome.problem is not None:
            report.problems.append(outcome.problem)
        elif row.line_no not in bad_lines:
            report.usable_seconds += outcome.seconds

        now = time.monotonic()
        if progress and (now - last_print >= 10 or i == len(manifest.rows)):
            last_print = now
            print(
                f"Checked {i}/{len(manifest.rows)} rows in {now - start:.0f} s.",
                file=sys.stderr,
            )

    report.problems.sort(key=lambda p: (p.line_no, p.reason))

    return report


T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(
    fn: Callable[[T], R], items: list[T], num_workers: int
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in order, with a bounded number of tasks in flight
    (``Executor.map`` would queue a future per row of a million-row manifest)."""
    if num_workers <= 1:
        for item in items:
            yield item, fn(item)
        return

    window = 4 * num_workers

    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= window:
                head, future = pending.popleft()
                yield head, future.result()
        while pending:
            head, future = pending.popleft()
            yield head, future.result()
