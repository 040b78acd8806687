"""``python -m speechmapper_plugin.quickstart.long_form QUICKSTART_OUT``:
long-form figures on the quickstart's trained model.

Long recordings are built from the quickstart's held-out test utterances
(their wavs in a shuffled order, cycled where a recording needs more,
joined with 0.5-2 s pauses into one 16-bit PCM WAV): by default a 3-minute
and a 20-minute one. Each is transcribed long-form through the pipeline
and through ``recipes.generate`` with ``long_form`` on, with three
segmenters (:func:`segmenters`: 30 s fixed windows, VAD segments up to
30 s, VAD segments no longer than the longest training utterance), and
through ``recipes.evaluate`` (the last), and compared with the same
utterances transcribed one by one:

- WER over the whole recording (the references joined, one pair);
- the long-form hypothesis re-segmented onto the utterances by minimum edit
  distance (:mod:`~speechmapper_plugin.evaluation.resegment`), so that it
  has the per-utterance WER's bootstrap interval over utterances, and the
  paired bootstrap interval of the difference (long-form − per-utterance).

All WERs are the evaluation's (:func:`~speechmapper_plugin.evaluation.asr.asr_scores`:
Whisper's English normaliser). The peak resident memory of long-form
transcription through the pipeline is measured on a 2- and a 20-minute
recording in one fresh process. Writes ``figures.json`` and ``figures.md``
(and the recordings and recipe runs) into ``QUICKSTART_OUT/long_form/``.

``--tune`` chooses a VAD setting instead (:func:`tune`): a greedy sweep on
a recording built the same way from the dev split (dev sentences, dev
voice), the segments' edges compared with the true utterance spans; the
chosen setting and the defaults are then scored once on the test
recordings. Writes ``tuning.json`` and ``tuning.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.audio.resample import TARGET_SAMPLE_RATE
from speechmapper_plugin.audio.segments import SegmenterConfig
from speechmapper_plugin.audio.stream import num_samples_16k
from speechmapper_plugin.data.manifest_reader import read_manifest
from speechmapper_plugin.evaluation.asr import asr_scores, percent_rate
from speechmapper_plugin.evaluation.resegment import resegment
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.metrics.intervals import paired_bootstrap_estimate
from speechmapper_plugin.quickstart.assets import LLM_CARD, SFM_CARD
from speechmapper_plugin.quickstart.commands import find_repo_root, yaml_value
from speechmapper_plugin.quickstart.layout import (
    QuickstartLayout,
    write_result_files,
)
from speechmapper_plugin.quickstart.steps import subprocess_env
from speechmapper_plugin.quickstart.summary import format_difference, format_interval
from speechmapper_plugin.speech_llm import SkippedInput, SpeechMapperPipeline
from speechmapper_plugin.speech_llm.long_form import LongFormResult, run_long_form

OUT_DIR = "long_form"

LANG = "en"

MAX_NEW_TOKENS = 128
"""Per segment: a 30 s window holds several utterances (the quickstart's
evaluation budget, 32, is for one); the toy LLM's context bounds it anyway."""


RSS_BATCH_SIZE = 4
"""Segments per forward pass in the peak-RSS measurement: the 2-minute
recording (5 windows) fills a batch as the 20-minute one does, so the peaks
compare lengths, not batch sizes."""


def segmenters(short_seconds: float) -> dict[str, SegmenterConfig]:
    """The segmenters compared, by label: 30 s fixed windows and VAD
    segments of up to 30 s (the defaults: several utterances each), and VAD
    segments no longer than the longest training utterance (``vad-short``:
    the utterances one by one, as the model was trained)."""
    return {
        "fixed": SegmenterConfig(kind="fixed"),
        "vad": SegmenterConfig(kind="vad"),
        "vad-short": SegmenterConfig(kind="vad", max_seconds=short_seconds),
    }


def longest_utterance(manifest: Path) -> float:
    """Seconds of the longest utterance of ``manifest``, rounded up to 0.5 s."""
    lengths = [num_samples_16k(r.audio) or 0 for r in read_manifest(manifest).rows]
    return math.ceil(max(lengths) / TARGET_SAMPLE_RATE * 2) / 2


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: Path
    reference: str
    start: float
    end: float


@dataclass(frozen=True)
class Recording:
    name: str
    path: Path
    utterances: list[Utterance]

    @property
    def seconds(self) -> float:
        with wave.open(str(self.path), "rb") as fp:
            return fp.getnframes() / fp.getframerate()

    @property
    def references(self) -> list[str]:
        return [u.reference for u in self.utterances]


@dataclass(frozen=True)
class Components:
    """The trained model: cards (and the stage-2 checkpoints behind
    ``last_checkpoint``)."""

    sfm: str
    projector: str
    llm: str
    card_dirs: tuple[Path, ...]
    checkpoints: Path | None

    def recipe_overrides(self) -> list[str]:
        overrides = [
            f"model.name={self.projector}",
            f"sfm.name={self.sfm}",
            f"llm.name={self.llm}",
            f"common.assets.extra_paths={yaml_value([str(d) for d in self.card_dirs])}",
        ]
        if self.checkpoints is not None:
            overrides.append(
                f"common.assets.prev_checkpoint_dir={yaml_value(str(self.checkpoints))}"
            )
        return overrides

    def load(self, generation: GenerationConfig) -> SpeechMapperPipeline:
        """Starts fairseq2 with the cards (once per process) and loads."""
        from fairseq2 import init_fairseq2
        from fairseq2.composition import (
            register_checkpoint_models,
            register_file_assets,
        )
        from fairseq2.runtime.dependency import DependencyContainer

        def extras(container: DependencyContainer) -> None:
            for directory in self.card_dirs:
                register_file_assets(container, directory)
            if self.checkpoints is not None:
                register_checkpoint_models(container, self.checkpoints)

        init_fairseq2(extras=extras)
        return SpeechMapperPipeline.from_cards(
            self.sfm, self.projector, self.llm, device="cpu", generation=generation
        )


def build_recording(
    rows: Sequence[tuple[str, Path, str]],
    path: Path,
    minutes: float,
    *,
    seed: int,
) -> Recording:
    """``rows`` (id, wav, reference) in a shuffled order, cycled as needed,
    joined with 0.5-2 s pauses until ``minutes`` are reached; written
    utterance by utterance (the recording never sits in memory whole)."""
    if not rows:
        raise ValueError("No utterances to build a recording from.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    target = int(minutes * 60 * TARGET_SAMPLE_RATE)
    utterances: list[Utterance] = []
    position = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TARGET_SAMPLE_RATE)
        while position < target:
            uid, audio, reference = rows[int(order[len(utterances) % len(rows)])]
            pause = int(rng.uniform(0.5, 2.0) * TARGET_SAMPLE_RATE)
            speech = load_audio(audio).numpy()
            samples = np.concatenate([np.zeros(pause, np.float32), speech])
            pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
            out.writeframes(pcm.tobytes())
            start = position + pause
            position = start + speech.size
            utterances.append(
                Utterance(
                    uid,
                    audio,
                    reference,
                    start / TARGET_SAMPLE_RATE,
                    position / TARGET_SAMPLE_RATE,
                )
            )
        out.writeframes(np.zeros(TARGET_SAMPLE_RATE // 2, "<i2").tobytes())
    return Recording(path.stem, path, utterances)


def compare(
    recording: Recording, long_form: str, per_utterance: Sequence[str]
) -> dict[str, Any]:
    """Long-form vs per-utterance WER on one recording (see the module
    docstring)."""
    refs = recording.references
    langs = [LANG] * len(refs)
    whole, _ = asr_scores([" ".join(refs)], [long_form], [LANG])
    pieces = resegment(long_form, refs).segments
    cut, cut_rows = asr_scores(refs, pieces, langs)
    alone, alone_rows = asr_scores(refs, per_utterance, langs)

    def stats(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
        return [(r["word_errors"], r["reference_words"]) for r in rows]

    difference = paired_bootstrap_estimate(
        stats(cut_rows), stats(alone_rows), percent_rate
    )
    return {
        "whole_recording_wer": whole["wer"],
        "resegmented_wer": cut["wer"],
        "resegmented_wer_ci": cut["wer_ci"],
        "per_utterance_wer": alone["wer"],
        "per_utterance_wer_ci": alone["wer_ci"],
        "difference": difference.to_dict(),
        "within_2_points": abs(whole["wer"] - alone["wer"]) <= 2.0,
    }


def _per_utterance(
    pipeline: SpeechMapperPipeline, recordings: Sequence[Recording]
) -> dict[str, str]:
    """The recordings' distinct utterances transcribed one by one, by id."""
    instruction = pipeline.prompts.transcription()
    distinct = {u.id: u.audio for r in recordings for u in r.utterances}
    ids = list(distinct)
    start = time.monotonic()
    results = pipeline.run(
        [distinct[i] for i in ids], instruction, on_error="skip", batch_size=16
    )
    print(
        f"per-utterance: {len(ids)} utterances in {time.monotonic() - start:.1f} s",
        flush=True,
    )
    return {
        i: "" if isinstance(r, SkippedInput) else r.text
        for i, r in zip(ids, results, strict=True)
    }


def _long_form_run(
    pipeline: SpeechMapperPipeline,
    recording: Recording,
    kind: str,
    config: SegmenterConfig,
) -> tuple[dict[str, Any], LongFormResult]:
    """One recording transcribed long-form: its text and timing, and the
    result (with the segments' edges)."""
    start = time.monotonic()
    result = run_long_form(
        pipeline, recording.path, pipeline.prompts.transcription(), segmenter=config
    )
    seconds = time.monotonic() - start
    print(
        f"{recording.name} pipeline {kind}: {len(result.segments)} segments in {seconds:.1f} s",
        flush=True,
    )
    values = {
        "text": result.text,
        "num_segments": len(result.segments),
        "num_skipped_segments": result.skipped,
        "seconds": round(seconds, 1),
    }
    return values, result


def _pipeline_runs(
    pipeline: SpeechMapperPipeline,
    recordings: Sequence[Recording],
    configs: dict[str, SegmenterConfig],
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Per-utterance hypotheses by id, and each recording's long-form text
    and timing per segmenter."""
    per_utterance = _per_utterance(pipeline, recordings)
    long: dict[str, dict[str, Any]] = {}
    for recording in recordings:
        for kind, config in configs.items():
            values, _ = _long_form_run(pipeline, recording, kind, config)
            long[f"{recording.name}/pipeline/{kind}"] = values
    return per_utterance, long


def _recipe(
    recipe: str,
    out: Path,
    manifest: Path,
    components: Components,
    kind: str,
    config: SegmenterConfig,
    *,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Runs ``recipes.<recipe>`` long-form on ``manifest``; its records."""
    repo = find_repo_root()
    command = [
        sys.executable,
        "-m",
        f"recipes.{recipe}",
        str(out),
        "--config-file",
        str(repo / "recipes" / recipe / "configs" / "tiny.yaml"),
        "--config",
        *components.recipe_overrides(),
        f"input.manifest={yaml_value(str(manifest))}",
        "prompt.task=asr",
        "long_form.enabled=true",
        f"long_form.segmenter.kind={config.kind}",
        f"long_form.segmenter.max_seconds={config.max_seconds}",
        f"generation.max_new_tokens={MAX_NEW_TOKENS}",
        "common.no_sweep_dir=true",
        *extra,
        "--no-rich",
    ]
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as fp:
        done = subprocess.run(
            command, cwd=repo, env=subprocess_env(repo), stdout=fp, stderr=fp
        )
    if done.returncode != 0:
        raise RuntimeError(f"recipes.{recipe} failed ({done.returncode}); see {log}.")
    print(
        f"recipes.{recipe} {kind}: {time.monotonic() - start:.1f} s (log: {log})",
        flush=True,
    )
    lines = (out / "hypotheses.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


_PEAK_RSS = """
import json, sys
from pathlib import Path
from speechmapper_plugin.quickstart.long_form import Components, peak_rss_kb
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.speech_llm.long_form import run_long_form

spec = json.loads(sys.argv[1])
components = Components(spec["sfm"], spec["projector"], spec["llm"],
    tuple(Path(d) for d in spec["card_dirs"]),
    None if spec["checkpoints"] is None else Path(spec["checkpoints"]))
pipeline = components.load(GenerationConfig(max_new_tokens=spec["max_new_tokens"]))
instruction = pipeline.prompts.transcription()
batch = spec["batch_size"]
run_long_form(pipeline, spec["paths"][0], instruction, batch_size=batch)  # warm-up
peaks = []
for path in spec["paths"]:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM back to the current resident memory
    result = run_long_form(pipeline, path, instruction, batch_size=batch)
    peaks.append({"path": path, "num_segments": len(result.segments), "peak_kb": peak_rss_kb()})
print(json.dumps(peaks))
"""


def peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM) since the last reset."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(
            int(line.split()[1]) for line in status if line.startswith("VmHWM:")
        )


def measure_peak_rss(
    components: Components, paths: Sequence[Path]
) -> list[dict[str, Any]]:
    """Peak RSS of long-form transcription (fixed windows) of each recording,
    in one fresh process, after a warm-up on the first."""
    spec = {
        "sfm": components.sfm,
        "projector": components.projector,
        "llm": components.llm,
        "card_dirs": [str(d) for d in components.card_dirs],
        "checkpoints": None
        if components.checkpoints is None
        else str(components.checkpoints),
        "max_new_tokens": MAX_NEW_TOKENS,
        "batch_size": RSS_BATCH_SIZE,
        "paths": [str(p) for p in paths],
    }
    repo = find_repo_root()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, json.dumps(spec)],
        cwd=repo,
        env=subprocess_env(repo),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"The peak-RSS measurement failed:\n{done.stderr[-3000:]}")
    peaks: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return peaks


def render(figures: dict[str, Any]) -> str:
    """The figures as markdown tables."""

    lines = [
        "# Long-form transcription on the quickstart's model",
        "",
        f"Command: `{figures['command']}`",
        "",
        "Segmenters: `fixed`: 30 s windows; `vad`: Silero VAD regions merged up to",
        "30 s; `vad-short`: merged up to the longest training utterance"
        f" ({figures['segmenters']['vad-short']['max_seconds']} s), i.e. one utterance each.",
        "",
        "WER in % (Whisper's English normaliser); intervals: 95 % bootstrap over",
        "the recording's utterances (the long-form hypothesis re-segmented onto",
        "them by minimum edit distance); difference: paired bootstrap.",
        "",
        "| recording | utterances | run | segments | whole-recording WER | re-segmented WER | per-utterance WER | long − per-utt. | within 2 pts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, recording in figures["recordings"].items():
        for run, values in recording["runs"].items():
            lines.append(
                f"| {name} ({recording['seconds'] / 60:.1f} min) | {recording['num_utterances']} "
                f"| {run} | {values.get('num_segments', '-')} "
                f"| {values['whole_recording_wer']:.2f} "
                f"| {values['resegmented_wer']:.2f} {format_interval(values['resegmented_wer_ci'])} "
                f"| {values['per_utterance_wer']:.2f} {format_interval(values['per_utterance_wer_ci'])} "
                f"| {format_difference(values['difference'], digits=2)} "
                f"| {'yes' if values['within_2_points'] else 'no'} |"
            )
    peaks = figures.get("peak_rss")
    if peaks:
        lines += [
            "",
            "Peak resident memory of long-form transcription through the pipeline",
            f"(fixed windows, {RSS_BATCH_SIZE} segments per batch; one fresh process, after a warm-up):",
            "",
            "| recording | segments | peak RSS (MB) |",
            "|---|---|---|",
        ]
        for peak in peaks:
            lines.append(
                f"| {Path(peak['path']).stem} | {peak['num_segments']} | {peak['peak_kb'] / 1024:.1f} |"
            )
        lines.append("")
        lines.append(f"20-min / 2-min peak: {figures['peak_rss_ratio']:.3f}")
    return "\n".join(lines) + "\n"


TUNING_PADS = (100, 50, 30, 10, 0)
"""``speech_pad_ms`` swept first on the dev recording (100 is the default)."""

TUNING_END_PADS = (100, 200, 300)
"""``speech_pad_end_ms`` tried next, longer than the best ``speech_pad_ms``
(the training utterances end in 0.2-0.5 s of quiet tail; 300 is the
default ``min_silence_ms``, the most a pad may take)."""

TUNING_THRESHOLDS = (0.3, 0.7)
"""``vad_threshold`` tried last around the default 0.5, with ..."""

TUNING_MIN_SILENCE_MS = (100,)
"""... a shorter ``min_silence_ms`` than the default 300 (where the pads
allow) and segments of up to 30 s."""


def tuning_label(config: SegmenterConfig) -> str:
    """A VAD setting in a table row."""
    return (
        f"vad ≤{config.max_seconds:g} s, pad {config.speech_pad_ms}/{config.end_pad_ms} ms, "
        f"threshold {config.vad_threshold:g}, min silence {config.min_silence_ms} ms"
    )


def edge_errors(recording: Recording, result: LongFormResult) -> dict[str, Any]:
    """How the segments' edges compare to the utterances' true spans: each
    utterance is matched to the segment overlapping it most; onset/offset
    errors are that segment's start/end minus the utterance's (ms; the
    utterance's span is its whole wav, with the synthesiser's ~15 ms of
    lead-in and its quiet tail). ``shared``: utterances whose segment holds
    another utterance too; ``missed``: utterances no segment overlaps."""
    onsets: list[float] = []
    offsets: list[float] = []
    owners: list[int] = []
    for u in recording.utterances:
        overlaps = [min(s.end, u.end) - max(s.start, u.start) for s in result.segments]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best < 0 or overlaps[best] <= 0:
            owners.append(-1)
            continue
        owners.append(best)
        onsets.append(1000 * (result.segments[best].start - u.start))
        offsets.append(1000 * (result.segments[best].end - u.end))
    counts = np.bincount([o for o in owners if o >= 0], minlength=1)

    def mean(values: list[float]) -> float | None:
        return round(float(np.mean(values)), 1) if values else None

    return {
        "onset_mae_ms": mean([abs(v) for v in onsets]),
        "onset_mean_ms": mean(onsets),
        "offset_mae_ms": mean([abs(v) for v in offsets]),
        "offset_mean_ms": mean(offsets),
        "shared": int(sum(counts[o] > 1 for o in owners if o >= 0)),
        "missed": owners.count(-1),
    }


def _tuning_run(
    pipeline: SpeechMapperPipeline,
    recording: Recording,
    per_utterance: dict[str, str],
    kind: str,
    config: SegmenterConfig,
) -> dict[str, Any]:
    values, result = _long_form_run(pipeline, recording, kind, config)
    hyps = [per_utterance[u.id] for u in recording.utterances]
    return {
        "segmenter": asdict(config),
        **compare(recording, values.pop("text"), hyps),
        **edge_errors(recording, result),
        **values,
    }


def tune(
    pipeline: SpeechMapperPipeline,
    dev: Recording,
    tests: Sequence[Recording],
    short_seconds: float,
) -> dict[str, Any]:
    """Chooses a VAD setting on the dev recording, then scores it and the
    defaults (:func:`segmenters`) once on the test recordings.

    Dev sweep, greedy, each step from the lowest whole-recording WER so far
    (ties: the first run): ``speech_pad_ms`` over :data:`TUNING_PADS`
    (segments up to ``short_seconds``: one utterance each, as the model
    was trained); a longer ``speech_pad_end_ms`` (:data:`TUNING_END_PADS`);
    the VAD threshold, a shorter ``min_silence_ms`` and 30 s segments. The
    chosen setting is the sweep's lowest whole-recording WER."""
    per_utterance = _per_utterance(pipeline, [dev, *tests])

    dev_runs: dict[str, dict[str, Any]] = {}

    def sweep(configs: Sequence[SegmenterConfig]) -> SegmenterConfig:
        """Runs the new candidates; the best setting so far."""
        for config in configs:
            label = tuning_label(config)
            if label not in dev_runs:
                dev_runs[label] = _tuning_run(
                    pipeline, dev, per_utterance, label, config
                )
        best = min(dev_runs.values(), key=lambda v: v["whole_recording_wer"])
        return SegmenterConfig(**best["segmenter"])

    def valid(config: SegmenterConfig) -> bool:
        try:
            config.check()
        except ValueError:
            return False
        return True

    base = SegmenterConfig(kind="vad", max_seconds=short_seconds)
    best = sweep([replace(base, speech_pad_ms=p) for p in TUNING_PADS])
    best = sweep(
        [
            replace(best, speech_pad_end_ms=e)
            for e in TUNING_END_PADS
            if e > best.speech_pad_ms
        ]
    )
    third = [replace(best, vad_threshold=t) for t in TUNING_THRESHOLDS]
    third += [replace(best, min_silence_ms=m) for m in TUNING_MIN_SILENCE_MS]
    third.append(replace(best, max_seconds=SegmenterConfig().max_seconds))
    chosen_config = sweep([c for c in third if valid(c)])
    chosen = tuning_label(chosen_config)

    test_runs: dict[str, dict[str, dict[str, Any]]] = {}
    for recording in tests:
        configs = {f"chosen: {chosen}": chosen_config, **segmenters(short_seconds)}
        test_runs[recording.name] = {
            label: _tuning_run(pipeline, recording, per_utterance, label, config)
            for label, config in configs.items()
        }

    def describe(recording: Recording) -> dict[str, Any]:
        return {
            "path": str(recording.path),
            "seconds": recording.seconds,
            "num_utterances": len(recording.utterances),
        }

    return {
        "dev": {**describe(dev), "runs": dev_runs},
        "chosen": chosen,
        "test": {r.name: {**describe(r), "runs": test_runs[r.name]} for r in tests},
    }


def render_tuning(tuning: dict[str, Any]) -> str:
    """The tuning as markdown tables (dev: every candidate; test: the
    chosen one and the defaults)."""
    header = [
        "| recording | run | segments | whole-recording WER | per-utterance WER | long − per-utt. [95 % CI] | within 2 pts | onset err. (mean abs / mean, ms) | offset err. (mean abs / mean, ms) | shared / missed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rows(name: str, recording: dict[str, Any]) -> list[str]:
        lines = []
        for run, v in recording["runs"].items():
            lines.append(
                f"| {name} ({recording['num_utterances']} utt.) | {run} | {v['num_segments']} "
                f"| {v['whole_recording_wer']:.2f} | {v['per_utterance_wer']:.2f} "
                f"| {format_difference(v['difference'], digits=2)} "
                f"| {'yes' if v['within_2_points'] else 'no'} "
                f"| {v['onset_mae_ms']} / {v['onset_mean_ms']} "
                f"| {v['offset_mae_ms']} / {v['offset_mean_ms']} "
                f"| {v['shared']} / {v['missed']} |"
            )
        return lines

    lines = [
        "# Long-form segmentation tuned on the dev split",
        "",
        f"Command: `{tuning['command']}`",
        "",
        "Recordings built as in `figures.md` (0.5-2 s pauses), from the dev",
        "split's utterances (dev sentences, dev voice) for the sweep and the",
        "test split's for the check. `vad-short`: VAD segments up to the",
        f"longest training utterance ({tuning['short_seconds']} s); `vad`: up to 30 s;",
        "`fixed`: 30 s windows. Chosen: the dev sweep's lowest whole-recording WER.",
        "WER in % (Whisper's English normaliser); difference: re-segmented",
        "long-form − per-utterance, paired bootstrap over utterances.",
        "Edge errors: the segment overlapping an utterance most, its start/end",
        "minus the utterance wav's (which has ~15 ms of lead-in and a quiet tail).",
        "",
        "## Dev (every candidate)",
        "",
        *header,
        *rows(Path(tuning["dev"]["path"]).stem, tuning["dev"]),
        "",
        f"Chosen on dev: **{tuning['chosen']}**.",
        "",
        "## Test (the chosen setting and the defaults, once)",
        "",
        *header,
    ]
    for name, recording in tuning["test"].items():
        lines += rows(name, recording)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.quickstart.long_form",
        description="Long-form WER and memory on the quickstart's trained model.",
    )
    parser.add_argument("quickstart_out", type=Path, help="a finished quickstart run")
    parser.add_argument("--run", default="sigma09", help="the stage-2 run (sigma09)")
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=[3.0, 20.0], help="recordings"
    )
    parser.add_argument(
        "--rss-minutes",
        type=float,
        nargs="*",
        default=[2.0, 20.0],
        help="recordings whose peak RSS is compared (none: skip)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-recipes", action="store_true", help="the pipeline only (faster)"
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="choose the VAD setting on a 3-minute dev recording, score it and the"
        " defaults on test recordings of --minutes; writes tuning.{json,md}",
    )
    parser.add_argument(
        "--tune-dev-minutes",
        type=float,
        default=3.0,
        help="the dev recording of --tune (3)",
    )
    parser.add_argument("--sfm", default=SFM_CARD, help=argparse.SUPPRESS)
    parser.add_argument("--llm", default=LLM_CARD, help=argparse.SUPPRESS)
    parser.add_argument("--projector", help=argparse.SUPPRESS)
    parser.add_argument("--cards", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    layout = QuickstartLayout(args.quickstart_out.expanduser().absolute())
    manifest = layout.manifest("test")
    if not manifest.is_file():
        parser.error(f"{manifest} is missing: give a finished quickstart run's folder.")
    if args.projector is None:
        checkpoints: Path | None = layout.stage2(args.run) / "checkpoints"
        assert checkpoints is not None
        if not (checkpoints / "model.yaml").is_file():
            parser.error(
                f"{checkpoints} holds no checkpoint: run the quickstart to the end first."
            )
        projector = "last_checkpoint"
    else:
        checkpoints, projector = None, args.projector
    components = Components(
        sfm=args.sfm,
        projector=projector,
        llm=args.llm,
        card_dirs=(args.cards or layout.cards,),
        checkpoints=checkpoints,
    )
    out = layout.root / OUT_DIR
    rows = [(r.id, r.audio, r.transcript) for r in read_manifest(manifest).rows]

    command = " ".join(
        [
            "python -m speechmapper_plugin.quickstart.long_form",
            *(sys.argv[1:] if argv is None else argv),
        ]
    )
    if args.tune:
        return _tune_main(args, command, layout, components, rows)

    recordings = [
        build_recording(rows, out / f"recording_{m:g}min.wav", m, seed=args.seed + i)
        for i, m in enumerate(args.minutes)
    ]
    listing = out / "recordings.tsv"
    listing.write_text(
        "id\taudio\ttext\tlang\n"
        + "".join(
            f"{r.name}\t{r.path}\t{' '.join(r.references)}\t{LANG}\n"
            for r in recordings
        ),
        encoding="utf-8",
    )
    for r in recordings:
        (out / f"{r.name}.utterances.jsonl").write_text(
            "".join(
                json.dumps(
                    {"id": u.id, "start": u.start, "end": u.end, "text": u.reference}
                )
                + "\n"
                for u in r.utterances
            ),
            encoding="utf-8",
        )

    train = layout.manifest("train")
    short_seconds = longest_utterance(train if train.is_file() else manifest)
    configs = segmenters(short_seconds)
    pipeline = components.load(GenerationConfig(max_new_tokens=MAX_NEW_TOKENS))
    per_utterance, long = _pipeline_runs(pipeline, recordings, configs)
    (out / "per_utterance.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "hypothesis": h}, ensure_ascii=False) + "\n"
            for i, h in per_utterance.items()
        ),
        encoding="utf-8",
    )

    if not args.no_recipes:
        for kind, config in configs.items():
            for record in _recipe(
                "generate", out / f"generate_{kind}", listing, components, kind, config
            ):
                long[f"{record['id']}/generate/{kind}"] = {
                    "text": record["hypothesis"],
                    "num_segments": len(record.get("segments", [])),
                }
        for record in _recipe(
            "evaluate",
            out / "evaluate_vad-short",
            listing,
            components,
            "vad-short",
            configs["vad-short"],
            extra=["scoring.comet=false"],
        ):
            long[f"{record['id']}/evaluate/vad-short"] = {
                "text": record["hypothesis"],
                "num_segments": len(record.get("segments", [])),
            }

    figures: dict[str, Any] = {
        "command": command,
        "max_new_tokens": MAX_NEW_TOKENS,
        "segmenters": {k: asdict(c) for k, c in configs.items()},
        "recordings": {},
    }
    for recording in recordings:
        hyps = [per_utterance[u.id] for u in recording.utterances]
        runs: dict[str, Any] = {}
        for key, values in long.items():
            name, source, kind = key.split("/")
            if name != recording.name:
                continue
            runs[f"{source} {kind}"] = {
                **compare(recording, values["text"], hyps),
                **values,
            }
        figures["recordings"][recording.name] = {
            "path": str(recording.path),
            "seconds": recording.seconds,
            "num_utterances": len(recording.utterances),
            "num_distinct_utterances": len({u.id for u in recording.utterances}),
            "runs": runs,
        }

    if args.rss_minutes:
        paths = [out / f"rss_{m:g}min.wav" for m in args.rss_minutes]
        for i, (m, path) in enumerate(zip(args.rss_minutes, paths, strict=True)):
            build_recording(rows, path, m, seed=args.seed + 100 + i)
        peaks = measure_peak_rss(components, paths)
        figures["peak_rss"] = peaks
        figures["peak_rss_ratio"] = peaks[-1]["peak_kb"] / peaks[0]["peak_kb"]

    text = render(figures)
    json_path, md_path = write_result_files(out, "figures", figures, text)
    print(text)
    print(f"Figures in {json_path} and {md_path}.")
    return 0


def _tune_main(
    args: argparse.Namespace,
    command: str,
    layout: QuickstartLayout,
    components: Components,
    test_rows: list[tuple[str, Path, str]],
) -> int:
    """``--tune``: :func:`tune` on a dev recording (3 minutes) and the test
    recordings (the same seeds as the figures' recordings, so the same
    audio), written to ``tuning.{json,md}``."""
    dev_manifest = layout.manifest("dev")
    if not dev_manifest.is_file():
        raise SystemExit(f"{dev_manifest} is missing: --tune needs the dev split.")
    out = layout.root / OUT_DIR
    dev_rows = [(r.id, r.audio, r.transcript) for r in read_manifest(dev_manifest).rows]
    minutes = args.tune_dev_minutes
    dev = build_recording(
        dev_rows, out / f"tuning_dev_{minutes:g}min.wav", minutes, seed=args.seed
    )
    tests = [
        build_recording(
            test_rows, out / f"tuning_test_{m:g}min.wav", m, seed=args.seed + i
        )
        for i, m in enumerate(args.minutes)
    ]
    train = layout.manifest("train")
    short_seconds = longest_utterance(train if train.is_file() else dev_manifest)
    pipeline = components.load(GenerationConfig(max_new_tokens=MAX_NEW_TOKENS))
    tuning = {
        "command": command,
        "short_seconds": short_seconds,
        **tune(pipeline, dev, tests, short_seconds),
    }
    text = render_tuning(tuning)
    json_path, md_path = write_result_files(out, "tuning", tuning, text)
    print(text)
    print(f"Tuning in {json_path} and {md_path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
