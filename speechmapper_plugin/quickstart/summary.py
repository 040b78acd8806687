"""The quickstart's results: one table, ``summary.json``, ``summary.md`` and
the stage-1 validation plot, read from the runs' own outputs.

Every figure carries its sample size and 95 % interval (bootstrap over the
test utterances; Wilson for adherence), and the σ comparison is the paired
difference σ = 0.9 − σ = 0 on the same utterances: on 200 sentences a
1-2 point chrF gap is within what another draw of sentences could give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.quickstart.evaluation import (
    TARGET_LANGS,
    asr_entry,
    read_json,
    st_entry,
)
from speechmapper_plugin.quickstart.layout import QuickstartError, QuickstartLayout
from speechmapper_plugin.quickstart.steps import StepRecord
from speechmapper_plugin.quickstart.world import SPLIT_VOICES

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
    """ASR WER and per-language ST scores of one evaluation run, with their
    intervals and n."""
    metrics = read_json(evaluation_dir / "summary.json")["metrics"]
    failures = metrics.get("failures", {})
    scores: dict[str, Any] = {
        "asr": asr_entry(metrics),
        "repetition_stop_rate": failures.get("repetition_stop_rate"),
        "max_length_rate": failures.get("max_length_rate"),
    }
    for lang in TARGET_LANGS:
        entry = st_entry(metrics, lang)
        if entry is not None:
            scores[lang] = entry
    return scores


def sigma_difference(layout: QuickstartLayout) -> dict[str, Any]:
    """σ = 0.9 − σ = 0 on the same test utterances, paired bootstrap:
    ``asr.wer`` and ``<lang>.{chrf,bleu}``, each an interval's dict."""
    from speechmapper_plugin.evaluation.compare import paired_differences
    from speechmapper_plugin.generation_task.unit import HYPOTHESES_FILE

    differences = paired_differences(
        read_jsonl(layout.evaluation("sigma09") / HYPOTHESES_FILE),
        read_jsonl(layout.evaluation("sigma0") / HYPOTHESES_FILE),
    )
    return {
        "asr": differences.get("asr"),
        **{lang: differences.get(f"st/{lang}") for lang in TARGET_LANGS},
    }


def collect_summary(
    layout: QuickstartLayout,
    records: list[StepRecord],
    total_s: float,
    eet: dict[str, float | None],
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
        "sigma_difference": sigma_difference(layout),
        "stage1": {
            "heldout_mse_word": float(heldout[-1]["mse_word"]),
            "heldout_embedding_wer": float(heldout[-1]["embedding_wer"]),
            "dev_mse_word": float(dev[-1]["mse_word"]),
            "dev_embedding_wer": float(dev[-1]["embedding_wer"]),
        },
        "eet": eet,
        "timing": {
            "total_s": round(total_s, 1),
            "steps": {r.name: round(r.seconds, 1) for r in records},
        },
        "options": options,
    }


def _num(value: object, unit: str = "") -> str:
    return "-" if value is None else f"{float(value):.1f}{unit}"  # type: ignore[arg-type]


def format_interval(interval: Any, signed: bool = False, digits: int = 1) -> str:
    """``[31.2, 36.9]`` (``[+0.4, +3.1]`` for a difference) from a dict with
    ``low`` and ``high``; ``-`` without."""
    if not isinstance(interval, dict):
        return "-"
    form = f"{'+' if signed else ''}.{digits}f"
    return f"[{interval['low']:{form}}, {interval['high']:{form}}]"


def format_difference(interval: Any, digits: int = 1) -> str:
    """``+2.7 [+1.1, +4.4]``: a paired difference (``value``) and its interval."""
    if not isinstance(interval, dict):
        return "-"
    value = f"{interval['value']:+.{digits}f}"
    return f"{value} {format_interval(interval, signed=True, digits=digits)}"


def format_table(summary: dict[str, Any]) -> str:
    """The one table: ASR and zero-shot ST of the speech models next to the
    text references with their 95 % intervals, the paired σ difference, then
    stage 1 and the EET."""
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
    intervals = [
        f"{'95 % intervals':47} {'ASR WER':>12} "
        + " ".join(
            f"{lang + ' ' + m:>12}"
            for lang in TARGET_LANGS
            for m in ("chrF", "BLEU", "adh.%")
        )
    ]
    for name, asr, st in rows:
        cells = [_num(None if asr is None else asr["wer"])]
        ranges = [format_interval(None if asr is None else asr.get("wer_ci"))]
        for lang in TARGET_LANGS:
            entry = None if st is None else st.get(lang)
            for key in ("chrf", "bleu", "adherence"):
                cells.append(_num(None if entry is None else entry[key]))
                ranges.append(
                    format_interval(None if entry is None else entry.get(f"{key}_ci"))
                )
        lines.append(
            f"{name:47} {cells[0]:>8} " + " ".join(f"{c:>9}" for c in cells[1:])
        )
        intervals.append(
            f"{name:47} {ranges[0]:>12} " + " ".join(f"{c:>12}" for c in ranges[1:])
        )
    num_test = (summary["st"].get(TARGET_LANGS[0]) or {}).get("n")
    lines.append("")
    lines.append(
        f"Over n = {num_test} test utterances (held-out sentences, held-out voice); "
        "95 % intervals by bootstrap over utterances (Wilson for adherence):"
    )
    lines += intervals
    difference = summary.get("sigma_difference") or {}
    asr_difference = (difference.get("asr") or {}).get("wer")
    lines.append("")
    lines.append(
        "σ=0.9 − σ=0, paired bootstrap over the same utterances: ASR WER "
        + format_difference(asr_difference)
        + "; "
        + "; ".join(
            f"{lang} chrF {format_difference((difference.get(lang) or {}).get('chrf'))}, "
            f"BLEU {format_difference((difference.get(lang) or {}).get('bleu'))}"
            for lang in TARGET_LANGS
        )
    )
    stage1 = summary["stage1"]
    lines.append("")
    lines.append(
        f"Stage 1 held-out (test sentences, held-out voice): MSE_word {stage1['heldout_mse_word']:.4f}, "
        f"embedding WER {stage1['heldout_embedding_wer']:.1f} %; dev: {stage1['dev_mse_word']:.4f}, {stage1['dev_embedding_wer']:.1f} %"
    )
    eet = summary["eet"]
    threshold, low, high = (
        eet.get(k) for k in ("threshold_mse", "threshold_low", "threshold_high")
    )
    interval = (
        f" [{low:.2e}, {high:.2e}]" if low is not None and high is not None else ""
    )
    lines.append(
        "Toy LLM EET (MSE where the change rate crosses 5 %, 95 % interval): "
        + ("not reached" if threshold is None else f"{threshold:.2e}{interval}")
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


def split_label(split: str) -> str:
    """``dev (voice en-us-nyc+f4)``: the split and the voice that speaks it."""
    return f"{split} (voice {', '.join(SPLIT_VOICES[split])})"


def plot_stage1(layout: QuickstartLayout) -> Path:
    """Stage 1's validation curves (MSE_word and embedding WER per split),
    each split labelled with the voice that speaks it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    fig.suptitle(
        "Held-out sentences spoken by voices that training never heard",
        fontsize="medium",
    )
    for split in ("dev", HELDOUT_SPLIT):
        records = stage1_validation(layout, split)
        steps = [int(r["Step"]) for r in records]
        label = split_label(split)
        axes[0].plot(
            steps, [float(r["mse_word"]) for r in records], marker="o", label=label
        )
        axes[1].plot(
            steps, [float(r["embedding_wer"]) for r in records], marker="o", label=label
        )
    axes[0].set_yscale("log")
    axes[0].set_title("stage 1 validation MSE_word")
    axes[1].set_title("stage 1 validation embedding WER (%)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(layout.stage1_plot, dpi=100)
    plt.close(fig)
    return layout.stage1_plot
