"""Prints the measured table of BENCHMARKS.md from ``benchmarks/results/*.json``.

python -m benchmarks.table
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.harness import RESULTS


def _load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return result


def _mmm(s: dict[str, Any], fmt: str = "{:.2f}") -> str:
    """median (min–max)"""
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def rows() -> list[tuple[str, str, str, str]]:
    out = []
    r = _load("stage1_step_cpu.json")
    out.append(
        (
            "1 stage-1 step: recipe ÷ hand-written loop (frames/s), 29.2M-param projector",
            f"**{_mmm(r['ratio'])}**",
            "≥ 0.95",
            f"recipe {_mmm(r['recipe_frames_per_s'], '{:.0f}')} frames/s, "
            f"{_mmm(r['recipe_utterances_per_s'])} utt/s; loop "
            f"{_mmm(r['loop_frames_per_s'], '{:.0f}')} frames/s; "
            f"{r['batches']['timed_steps']} timed steps × {r['ratio']['n']} pairs; "
            f"data time {100 * r['recipe_data_time_share']['median']:.2f} % of the recipe's",
        )
    )
    r = _load("data_path_cpu.json")
    fps = r["frames_per_second"]
    out.append(
        (
            "2 data path: stage-1 pipeline ÷ stage-1 training (frames/s)",
            f"**{_mmm(r['headroom_stage1'], '{:.0f}')}×**",
            "≥ 10",
            f"pipeline {_mmm(fps['stage1_pipeline'], '{:.3g}')} frames/s; training "
            f"{_mmm(fps['training'], '{:.0f}')} frames/s",
        )
    )
    out.append(
        (
            "2 data path: stage-2 instruction pipeline ÷ stage-1 training (frames/s)",
            f"**{_mmm(r['headroom_stage2'], '{:.0f}')}×**",
            "≥ 10",
            f"pipeline {_mmm(fps['stage2_pipeline'], '{:.3g}')} frames/s",
        )
    )
    r = _load("stage1_memory_cpu.json")
    for depth in ("2_layers", "16_layers"):
        d = r[depth]
        out.append(
            (
                f"3 stage-1 memory: peak RSS growth ÷ table ({r['table']['MiB']} MiB bf16), "
                f"1B-shaped Llama, {depth.replace('_', ' ')} "
                f"({d['num_parameters'] / 1e9:.2f}B params, {d['checkpoint_GiB_on_disk']} GiB)",
                f"**{_mmm(d['ratio'], '{:.3f}')}×**",
                "≤ 1.3, same at both depths",
                f"peak growth {_mmm(d['peak_growth_MiB'], '{:.0f}')} MiB",
            )
        )
    r = _load("feature_store_cpu.json")
    c = r["caching"]
    out.append(
        (
            "4 feature store: extracting (mid-size encoder) ÷ reading the same features",
            f"**{_mmm(c['extract_over_read'], '{:.0f}')}×**",
            "(the saving)",
            f"extract RTF {_mmm(c['real_time_factor']['extract'], '{:.3f}')}",
        )
    )
    out.append(
        (
            "4 feature store: stage-1 step with on-the-fly extraction ÷ with the store",
            f"**{_mmm(c['stage1_step_with_extraction_over_with_store'])}×**",
            "(the saving)",
            f"step {c['seconds']['train_step']['median']:.2f} s, extraction "
            f"{c['seconds']['extract']['median']:.2f} s, read "
            f"{c['seconds']['read']['median'] * 1000:.1f} ms for {c['batch_audio_seconds']:.0f} s of audio",
        )
    )
    size = r["size"]
    out.append(
        (
            "4 feature store: MB per hour of audio (1024-d, 25 Hz)",
            f"**fp16 {size['float16']['MB_per_hour']}, bf16 {size['bfloat16']['MB_per_hour']}**",
            "",
            f"tensor bytes alone {size['float16']['tensor_MB_per_hour']}; read "
            f"{_mmm(r['read']['MB_per_second'], '{:.0f}')} MB/s "
            f"({_mmm(r['read']['frames_per_second'], '{:.3g}')} frames/s), page cache warm",
        )
    )
    r = _load("sm4t_encoder_cpu.json")
    cfg = r["config"]
    out.append(
        (
            f"5 speech encoder: ours ÷ transformers' ({cfg['model_dim']}-d, "
            f"{cfg['num_encoder_layers']} layers, {len(r['batch']['seconds'])} utterances, fp32, "
            f"{r['threads']} threads)",
            f"**{r['ratio']:.2f}** best of {r['repeats']}, {r['ratio_median']:.2f} median",
            "(keep ≤ 1)",
            f"max abs diff {r['max_abs_diff_vs_transformers']['ours']:.1e}; "
            f"{r['ratio_fairseq2_sdpa']:.2f} with fairseq2's Shaw attention",
        )
    )
    rtf = r["real_time_factor"]
    out.append(
        (
            "5 speech encoder: real-time factor of the whole extraction (fbank included)",
            f"**tiny {rtf['tiny']['median']:.4f}, mid-size {rtf['mid_size']['median']:.3f}**",
            "",
            f"tiny 64-d × 4, mid-size 512-d × 12; {rtf['tiny']['audio_seconds']:.0f} s of audio",
        )
    )
    r = _load("generation_cpu.json")
    # `make bench` runs one thread; a run on the machine's two threads (a
    # server's setting) sits beside it when recorded.
    runs = [r]
    if (RESULTS / "generation_cpu_2threads.json").is_file():
        runs.append(_load("generation_cpu_2threads.json"))
    for run in runs:
        b = run["batched_vs_one_by_one"]
        m = b["model"]
        threads = run["environment"]["torch_threads"]
        clock = "CPU time" if b.get("clock") == "cpu" else "wall clock"
        for key, label in (
            ("equal_lengths", "equal prompts"),
            ("spread_lengths", "prompts 64–94"),
        ):
            x = b[key]
            tps = x["tokens_per_second"]
            out.append(
                (
                    f"6 generation: batched (16) ÷ one-by-one, {label}, "
                    f"{m['num_parameters'] / 1e6:.0f}M-param Llama, "
                    f"{threads} thread{'s' if threads > 1 else ''}",
                    f"**{_mmm(x['speedup'])}×** ({clock}), same tokens: {x['same_tokens']}",
                    str(x.get("target", ">= 5")).replace(">=", "≥"),
                    f"{tps['batched']['median']:.0f} vs {tps['one_by_one']['median']:.0f} tokens/s",
                )
            )
    o = r["ours_vs_transformers"]
    tps = o["tokens_per_second"]
    out.append(
        (
            "6 generation: ours ÷ transformers' generate(inputs_embeds) time, tiny Llama",
            f"**{_mmm(o['ratio'])}**, same tokens: {o['same_tokens']}",
            "≤ 1",
            f"{tps['ours']['median']:.0f} vs {tps['transformers']['median']:.0f} tokens/s",
        )
    )
    return out


def main() -> None:
    print("| figure | ratio, median (min–max) | target | absolute, for reference |")
    print("|---|---|---|---|")
    for row in rows():
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
