"""What the quickstart did: read from the runs' own outputs, printed and
written to ``summary.json``."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.quickstart.assets import QuickstartAssets
from speechmapper_plugin.quickstart.corpus import SPLITS
from speechmapper_plugin.quickstart.generation import GenerationSummary
from speechmapper_plugin.quickstart.layout import QuickstartError, QuickstartLayout
from speechmapper_plugin.quickstart.options import QuickstartSize
from speechmapper_plugin.quickstart.steps import StepRecord

STAGE1_METRICS: Final = ("mse_word", "mse_pad", "cosine_word", "embedding_wer")
STAGE2_METRICS: Final = ("ce", "mse_word", "Loss")


@dataclass(frozen=True)
class MetricTrend:
    """A validation split's metrics at the first and the last validation."""

    split: str
    first_step: int
    last_step: int
    first: dict[str, float]
    last: dict[str, float]


@dataclass(frozen=True)
class SplitData:
    utterances: int
    audio_seconds: float
    extracted: int
    """Utterances in the feature store."""


@dataclass(frozen=True)
class StageSummary:
    steps: int
    checkpoints: str
    validation: list[MetricTrend]
    skipped: dict[str, int] = field(default_factory=dict)
    """Split -> examples the recipe skipped (listed in ``skipped/<split>.tsv``)."""


@dataclass(frozen=True)
class QuickstartSummary:
    out_dir: str
    total_seconds: float
    cards: dict[str, str]
    llm_vocab_size: int
    data: dict[str, SplitData]
    stage1: StageSummary
    stage2: StageSummary
    generation: GenerationSummary | None
    steps: list[dict[str, Any]]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def collect_summary(
    layout: QuickstartLayout,
    assets: QuickstartAssets,
    records: list[StepRecord],
    total_seconds: float,
    size: QuickstartSize,
    generation: GenerationSummary | None,
) -> QuickstartSummary:
    return QuickstartSummary(
        out_dir=str(layout.root),
        total_seconds=total_seconds,
        cards={
            "file": str(assets.card_file),
            "speech_encoder": assets.sfm_card,
            "llm": assets.llm.card_name,
        },
        llm_vocab_size=assets.llm.vocab_size,
        data={split: _split_data(layout, split) for split in SPLITS},
        stage1=_stage(layout.stage1, size.stage1_steps, STAGE1_METRICS, SPLITS),
        stage2=_stage(layout.stage2, size.stage2_steps, STAGE2_METRICS, ("dev",)),
        generation=generation,
        steps=[
            {
                "name": r.name,
                "title": r.title,
                "seconds": round(r.seconds, 2),
                "log": None if r.log is None else str(r.log),
            }
            for r in records
        ],
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise QuickstartError(
            f"{path} is missing; the step that writes it did not finish."
        )
    with path.open(encoding="utf-8") as fp:
        return [json.loads(line) for line in fp if line.strip()]


def read_trend(run_dir: Path, split: str, names: tuple[str, ...]) -> MetricTrend:
    """The first and last records of ``metrics/valid/<split>.jsonl``."""
    records = read_jsonl(run_dir / "metrics" / "valid" / f"{split}.jsonl")
    if not records:
        raise QuickstartError(f"{run_dir} recorded no validation of '{split}'.")
    first, last = records[0], records[-1]
    return MetricTrend(
        split=split,
        first_step=int(first["Step"]),
        last_step=int(last["Step"]),
        first={n: float(first[n]) for n in names if n in first},
        last={n: float(last[n]) for n in names if n in last},
    )


def _stage(
    run_dir: Path, steps: int, names: tuple[str, ...], splits: tuple[str, ...]
) -> StageSummary:
    skipped = {}
    for split in splits:
        listing = run_dir / "skipped" / f"{split}.tsv"
        rows = (
            listing.read_text(encoding="utf-8").splitlines()
            if listing.is_file()
            else []
        )
        skipped[split] = max(len(rows) - 1, 0)  # minus the header
    return StageSummary(
        steps=steps,
        checkpoints=str(run_dir / "checkpoints"),
        validation=[read_trend(run_dir, split, names) for split in splits],
        skipped=skipped,
    )


def _split_data(layout: QuickstartLayout, split: str) -> SplitData:
    rows = layout.manifest(split).read_text(encoding="utf-8").splitlines()[1:]
    num_samples = sum(int(row.split("\t")[2]) for row in rows)
    store = FeatureStore(layout.features(split), verify_checksums=False)
    try:
        extracted = len(store)
    finally:
        store.close()
    return SplitData(
        utterances=len(rows), audio_seconds=num_samples / 16_000, extracted=extracted
    )


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _metric(name: str, value: float) -> str:
    if name == "embedding_wer":
        return f"{value:6.1f} %"
    if name == "cosine_word":
        return f"{value:6.3f}"
    return f"{value:8.4f}"


def _trend_lines(
    trends: list[MetricTrend], names: tuple[str, ...], labels: tuple[str, ...]
) -> list[str]:
    lines = ["    split    step  " + "  ".join(f"{label:>9}" for label in labels)]
    for trend in trends:
        for step, values in (
            (trend.first_step, trend.first),
            (trend.last_step, trend.last),
        ):
            cells = "  ".join(
                f"{_metric(n, values[n]):>9}" if n in values else f"{'-':>9}"
                for n in names
            )
            lines.append(f"    {trend.split:<7}{step:>5}  {cells}")
    return lines


def format_summary(summary: QuickstartSummary) -> str:
    root = Path(summary.out_dir)
    train, dev = summary.data["train"], summary.data["dev"]
    audio_minutes = (train.audio_seconds + dev.audio_seconds) / 60

    lines = [
        f"Quickstart finished in {format_duration(summary.total_seconds)}. Everything is in {root}/:",
        f"  cards/quickstart.yaml       the cards: {summary.cards['speech_encoder']} (speech encoder), {summary.cards['llm']} (LLM)",
        "  assets/                     their checkpoints (Hugging Face safetensors) and the LLM's tokenizer",
        f"  corpus/                     {train.utterances} + {dev.utterances} synthesised utterances ({audio_minutes:.1f} min), manifests, validation reports",
        f"  extract/{{train,dev}}/features  speech features ({train.extracted} + {dev.extracted} utterances)",
        "  stage1/, stage2/            training runs: checkpoints/, metrics/, logs/, config.yaml",
    ]
    if summary.generation is not None:
        lines.append(
            f"  generate/                   {Path(summary.generation.hypotheses).name}, summary.json"
        )
    lines += [
        "  logs/                       one log per step, starting with its command line",
        "  summary.json                this summary, as JSON",
        "",
        f"Stage 1: {summary.stage1.steps} steps of projector pretraining (the LLM never runs)",
        f"  kept {train.extracted - summary.stage1.skipped['train']} of {train.extracted} training utterances (a transcript with more tokens than the projector emits positions is skipped)",
        *_trend_lines(
            summary.stage1.validation,
            STAGE1_METRICS,
            ("MSE_word", "MSE_pad", "cos_word", "emb. WER"),
        ),
        "",
        f"Stage 2: {summary.stage2.steps} steps of ASR instruction tuning through the frozen LLM "
        f"(CE of a uniform guess: ln {summary.llm_vocab_size} = {math.log(summary.llm_vocab_size):.2f})",
        *_trend_lines(
            summary.stage2.validation, STAGE2_METRICS, ("CE", "MSE_word", "loss")
        ),
        "",
    ]
    if summary.generation is None:
        lines += ["Generation: skipped (recipes/generate is not in this checkout).", ""]
    else:
        lines += [*summary.generation.format_lines(), ""]

    lines.append("Time per step:")
    for step in summary.steps:
        lines.append(f"  {step['seconds']:7.1f} s  {step['title']}")
    lines += [
        "",
        "The models are tiny and randomly initialised, so the numbers show each stage doing "
        "its job, not recognition quality: stage 1 maps the training utterances onto their "
        "transcripts' embeddings and moves held-out ones towards theirs; stage 2 lowers the "
        "frozen LLM's CE on held-out instructions by steering it with the speech embeddings, "
        "but a random LLM knows no language, so the hypotheses are gibberish. The same "
        "commands with full-size cards "
        "(see each step's log) give real results.",
    ]
    return "\n".join(lines)
