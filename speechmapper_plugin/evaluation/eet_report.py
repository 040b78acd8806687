"""Writing an EET measurement: ``eet.json``, a Markdown table, and the plot."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from speechmapper_plugin.evaluation.eet import (
    THRESHOLD_ABOVE_GRID,
    THRESHOLD_BELOW_GRID,
    EETResult,
)

EET_JSON = "eet.json"
EET_TABLE = "eet.md"
EET_PLOT = "eet.png"


def eet_to_dict(result: EETResult) -> dict[str, Any]:
    """Everything needed to read (and reproduce) the measurement.

    ``threshold_mse`` is the interpolated EET, ``threshold_low`` and
    ``threshold_high`` its bootstrap interval (all ``None`` unless
    ``threshold_status`` is ``measured``)."""
    estimate = result.threshold_estimate
    level = result.threshold_level
    return {
        "llm": result.llm,
        "instruction": result.instruction,
        "system_prompt": result.system_prompt,
        "dtype": result.dtype,
        "embed_dim": result.embed_dim,
        "seed": result.seed,
        "num_draws": result.num_draws,
        "change_threshold": result.change_threshold,
        "threshold_mse": result.threshold_mse,
        "threshold_low": None if estimate is None else estimate.low,
        "threshold_high": None if estimate is None else estimate.high,
        "threshold_confidence": result.confidence,
        "threshold_num_resamples": result.num_resamples,
        "threshold_status": result.threshold_status,
        "first_level_over_mse": None if level is None else level.mse,
        "safe_mse": result.safe_mse,
        "embedding_mean_square": result.embedding_mean_square,
        "table_mean_square": result.table_mean_square,
        "pad_mean_square": result.pad_mean_square,
        "num_sentences": len(result.sentences),
        "num_skipped": len(result.skipped),
        "skipped": [asdict(skip) for skip in result.skipped],
        "levels": [
            {
                "variance": level.variance,
                "mse": level.mse,
                "relative_mse": level.relative_mse,
                "num_outputs": level.num_outputs,
                "num_changed": level.num_changed,
                "change_rate": level.change_rate,
                "change_rate_stderr": level.change_rate_stderr,
                "wer_vs_clean": level.wer_vs_clean,
                "word_errors": level.word_errors,
                "num_clean_words": level.num_clean_words,
                "outputs": list(level.outputs),
                "changed_per_sentence": list(level.changed_per_sentence),
            }
            for level in result.levels
        ],
        "sentences": result.sentences,
    }


def format_eet_table(result: EETResult) -> str:
    """A Markdown table of the levels (the first over the threshold marked),
    the EET with its interval, and the embeddings' scale."""
    lines = [
        f"EET of {result.llm or 'the LLM'} ({len(result.sentences)} sentences x {result.num_draws} draws, {result.dtype}, seed {result.seed})",
        "",
        "| variance | MSE added | MSE / mean square | changed | change rate | WER vs clean |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    threshold = result.threshold_level
    for level in result.levels:
        wer = level.wer_vs_clean
        mark = " **<- first over**" if level is threshold else ""
        lines.append(
            f"| {level.variance:.3g} | {level.mse:.3e} | {level.relative_mse:.3g} "
            f"| {level.num_changed}/{level.num_outputs} "
            f"| {level.change_rate:.1%} ± {level.change_rate_stderr:.1%} "
            f"| {'-' if wer is None else f'{wer:.1%}'}{mark} |"
        )

    lines.append("")
    share = f"{result.change_threshold:.0%}"
    estimate = result.threshold_estimate
    if result.threshold_status == THRESHOLD_ABOVE_GRID:
        lines.append(
            f"No level changed more than {share} of the outputs: add larger variances."
        )
    elif result.threshold_status == THRESHOLD_BELOW_GRID:
        lines.append(
            f"Even the smallest variance changed more than {share} of the outputs: add smaller variances."
        )
    else:
        assert estimate is not None
        lines.append(
            f"EET (MSE where the change rate crosses {share}, log-linear between the bracketing levels): "
            f"**{estimate.value:.3e}**, {estimate.confidence:.0%} interval "
            f"[{estimate.low:.3e}, {estimate.high:.3e}] (bootstrap over the {estimate.n} sentences, "
            f"{result.num_resamples} resamples; a bound at the grid's first or last MSE means that far or beyond)."
        )
    pad = (
        ""
        if result.pad_mean_square is None
        else f", the pad token's {result.pad_mean_square:.3e}"
    )
    lines.append(
        f"Scale: the sentences' embeddings have a mean square of {result.embedding_mean_square:.3e}, "
        f"which is the MSE of an all-zero output against them; the whole embedding table's is "
        f"{result.table_mean_square:.3e}{pad}."
    )
    if result.safe_mse is not None:
        lines.append(f"Largest MSE measured below it: {result.safe_mse:.3e}.")
    if result.skipped:
        lines.append(f"Skipped sentences: {len(result.skipped)} (see eet.json).")

    return "\n".join(lines) + "\n"


def plot_eet(result: EETResult, path: Path, marker_mse: float | None = None) -> Path:
    """The change rate and WER vs clean against the added MSE (log scale), the
    EET and its interval marked; ``marker_mse`` (e.g. a projector's held-out MSE) as a second
    line, to see which side of the threshold it falls on."""
    import matplotlib

    matplotlib.use("Agg")

    from matplotlib import pyplot as plt

    levels = result.levels[1:]
    mses = [level.mse for level in levels]

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        ax.errorbar(
            mses,
            [level.change_rate for level in levels],
            yerr=[level.change_rate_stderr for level in levels],
            marker="o",
            capsize=3,
            label="outputs changed",
        )
        wers = [
            (lv.mse, lv.wer_vs_clean) for lv in levels if lv.wer_vs_clean is not None
        ]
        if wers:
            ax.plot(
                [m for m, _ in wers],
                [w for _, w in wers],
                marker="s",
                linestyle="--",
                label="WER vs clean output",
            )
        ax.axhline(result.change_threshold, color="grey", linewidth=0.8, linestyle=":")

        estimate = result.threshold_estimate
        if estimate is not None:
            ax.axvspan(estimate.low, estimate.high, color="red", alpha=0.15)
            ax.axvline(
                estimate.value,
                color="red",
                label=f"EET {estimate.value:.2e} [{estimate.low:.2e}, {estimate.high:.2e}]",
            )
        if marker_mse is not None:
            ax.axvline(
                marker_mse,
                color="green",
                linestyle="-.",
                label=f"stage-1 held-out MSE {marker_mse:.2e}",
            )

        ax.set_xscale("log")
        ax.set_xlabel("MSE added to the text embeddings")
        ax.set_ylabel("share / WER")
        ax.set_title(f"Embedding Error Threshold: {result.llm or 'LLM'}")
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(True, which="both", alpha=0.3)

        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)

    return path


def write_eet(
    result: EETResult, output_dir: Path, marker_mse: float | None = None
) -> dict[str, Path]:
    """Write ``eet.json``, ``eet.md`` and ``eet.png`` into ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)

    json_path = output_dir / EET_JSON
    data = eet_to_dict(result)
    data["marker_mse"] = marker_mse
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    table_path = output_dir / EET_TABLE
    table_path.write_text(format_eet_table(result))

    plot_path = plot_eet(result, output_dir / EET_PLOT, marker_mse)

    return {"json": json_path, "table": table_path, "plot": plot_path}
