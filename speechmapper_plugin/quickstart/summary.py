"""The quickstart's results: one table, ``summary.json``, ``summary.md`` and
the stage-1 validation plot, read from the runs' own outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.quickstart.evaluation import (
    TARGET_LANGS,
    adherence_of,
    read_json,
)
from speechmapper_plugin.quickstart.layout import QuickstartError, QuickstartLayout
from speechmapper_plugin.quickstart.steps import StepRecord

HELDOUT_SPLIT: Final = "test"
"""Stage 1's held-out figure: test sentences in the held-out test voice."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise QuickstartError(
            f"{path} is missing; the step that writes it did not finish."
        )
    with path.open(encoding="utf-8") as fp:
        return [json.loads(line) for line in fp if line.strip()]


def stage1_validation(layout: QuickstartLayout, split: str) -> list[dict[str, Any]]:
    return read_jsonl(layout.stage1 / "metrics" / "valid" / f"{split}.jsonl")


def speech_scores(evaluation_dir: Path) -> dict[str, Any]:
    """ASR WER and per-language ST scores of one evaluation run."""
    metrics = read_json(evaluation_dir / "summary.json")["metrics"]
    failures = metrics.get("failures", {})
    scores: dict[str, Any] = {
        "asr": {"wer": metrics["asr"]["wer"]} if "asr" in metrics else None,
        "repetition_stop_rate": failures.get("repetition_stop_rate"),
        "max_length_rate": failures.get("max_length_rate"),
    }
    for lang in TARGET_LANGS:
        group = metrics.get(f"st/{lang}")
        if group is not None:
            scores[lang] = {
                "bleu": group["bleu"],
                "chrf": group["chrf"],
                "adherence": adherence_of(metrics.get("failures/st", {}), lang),
            }
    return scores


def collect_summary(
    layout: QuickstartLayout,
    records: list[StepRecord],
    total_s: float,
    eet_threshold: float | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Everything the table shows, keyed as the README documents."""
    main = speech_scores(layout.evaluation("sigma09"))
    sigma0 = speech_scores(layout.evaluation("sigma0"))
    shuffled = speech_scores(layout.evaluation("shuffled"))
    references = read_json(layout.references)

    heldout = stage1_validation(layout, HELDOUT_SPLIT)
    dev = stage1_validation(layout, "dev")

    return {
        "asr": main["asr"],
        "st": {lang: main[lang] for lang in TARGET_LANGS},
        "repetition_stop_rate": main["repetition_stop_rate"],
        "baseline_no_translation": {
            "st": references["baseline_no_translation"],
        },
        "text_upper_bound": {
            "asr": references["text_upper_bound"]["asr"],
            "st": {lang: references["text_upper_bound"][lang] for lang in TARGET_LANGS},
        },
        "sigma0": {
            "asr": sigma0["asr"],
            "st": {lang: sigma0[lang] for lang in TARGET_LANGS},
            "repetition_stop_rate": sigma0["repetition_stop_rate"],
        },
        "shuffled_speech_control": {"asr": shuffled["asr"]},
        "stage1": {
            "heldout_mse_word": float(heldout[-1]["mse_word"]),
            "heldout_embedding_wer": float(heldout[-1]["embedding_wer"]),
            "dev_mse_word": float(dev[-1]["mse_word"]),
            "dev_embedding_wer": float(dev[-1]["embedding_wer"]),
        },
        "eet": {"threshold_mse": eet_threshold},
        "timing": {
            "total_s": round(total_s, 1),
            "steps": {r.name: round(r.seconds, 1) for r in records},
        },
        "options": options,
    }


def _num(value: object, unit: str = "") -> str:
    return "-" if value is None else f"{float(value):.1f}{unit}"  # type: ignore[arg-type]


def format_table(summary: dict[str, Any]) -> str:
    """The one table: ASR and zero-shot ST of the speech models next to the
    text references, then stage 1 and the EET."""
    rows = [
        ("SpeechMapper σ=0.9 (ASR-only stage 2)", summary["asr"], summary["st"]),
        ("ablation σ=0", summary["sigma0"]["asr"], summary["sigma0"]["st"]),
        (
            "text upper bound (gold transcript embeddings)",
            summary["text_upper_bound"]["asr"],
            summary["text_upper_bound"]["st"],
        ),
        (
            "no-translation baseline (English as output)",
            None,
            summary["baseline_no_translation"]["st"],
        ),
        (
            "shuffled-speech control (σ=0.9)",
            summary["shuffled_speech_control"]["asr"],
            None,
        ),
    ]
    header = f"{'':47} {'ASR WER':>8} " + " ".join(
        f"{lang + ' ' + m:>9}"
        for lang in TARGET_LANGS
        for m in ("chrF", "BLEU", "adh.%")
    )
    lines = [header]
    for name, asr, st in rows:
        cells = [_num(None if asr is None else asr["wer"])]
        for lang in TARGET_LANGS:
            entry = None if st is None else st.get(lang)
            for key in ("chrf", "bleu", "adherence"):
                cells.append(_num(None if entry is None else entry[key]))
        lines.append(
            f"{name:47} {cells[0]:>8} " + " ".join(f"{c:>9}" for c in cells[1:])
        )
    stage1 = summary["stage1"]
    lines.append("")
    lines.append(
        f"Stage 1 held-out (test sentences, held-out voice): MSE_word {stage1['heldout_mse_word']:.4f}, "
        f"embedding WER {stage1['heldout_embedding_wer']:.1f} %; dev: {stage1['dev_mse_word']:.4f}, {stage1['dev_embedding_wer']:.1f} %"
    )
    threshold = summary["eet"]["threshold_mse"]
    lines.append(
        "Toy LLM EET (MSE where >5 % of outputs change): "
        + ("not reached" if threshold is None else f"{threshold:.4f}")
    )
    lines.append(
        f"Repetition-stop rate σ=0.9: {_num(summary['repetition_stop_rate'])} %, σ=0: {_num(summary['sigma0']['repetition_stop_rate'])} %"
    )
    lines.append(f"Total time: {summary['timing']['total_s']:.0f} s")
    return "\n".join(lines)


def write_summary(layout: QuickstartLayout, summary: dict[str, Any]) -> None:
    layout.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    steps = "\n".join(
        f"| {name} | {seconds:.1f} |"
        for name, seconds in summary["timing"]["steps"].items()
    )
    layout.summary_md.write_text(
        "# Quickstart results\n\n```\n"
        + format_table(summary)
        + "\n```\n\n| step | seconds |\n|---|---|\n"
        + steps
        + "\n",
        encoding="utf-8",
    )


def plot_stage1(layout: QuickstartLayout) -> Path:
    """Stage 1's validation curves (MSE_word and embedding WER per split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("dev", HELDOUT_SPLIT):
        records = stage1_validation(layout, split)
        steps = [int(r["Step"]) for r in records]
        axes[0].plot(
            steps, [float(r["mse_word"]) for r in records], marker="o", label=split
        )
        axes[1].plot(
            steps, [float(r["embedding_wer"]) for r in records], marker="o", label=split
        )
    axes[0].set_yscale("log")
    axes[0].set_title("stage 1 validation MSE_word")
    axes[1].set_title("stage 1 validation embedding WER (%)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(layout.stage1_plot, dpi=100)
    plt.close(fig)
    return layout.stage1_plot
