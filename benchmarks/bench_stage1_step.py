"""Stage-1 step overhead: the stage-1 recipe's training throughput against a
minimal hand-written PyTorch loop training the identical projector with the
identical loss on identical batches.

Both sides run as their own process, in turn (recipe, loop, recipe, loop, ...),
one OpenMP thread each:

- recipe: ``python -m recipes.stage1`` on a 29M-parameter projector (the
  paper's two-block shape at 512-d), a feature store of random 25 Hz features
  (fp16) and a target LLM card; its throughput is read from fairseq2's own
  train metrics (``num_examples``, ``num_frames`` and ``lapse_time`` per publish
  interval), leaving out the first interval (warm-up);
- loop: the same script with ``--side loop``: the same reader (same dataset
  code, options and seed, so the same batches in the same order), materialised
  in memory before timing, then ``forward -> embedding_mse_loss -> backward ->
  clip_grad_norm_ -> AdamW.step`` per batch, timed over the same steps.

``ratio`` = recipe throughput / loop throughput, pair by pair (target >= 0.95).

    python -m benchmarks.bench_stage1_step [--pairs 3 --steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import (
    REPO,
    RESULTS,
    environment,
    pairwise_ratio,
    summarize,
    write_result,
)
from benchmarks.stage1_assets import (
    Stage1Assets,
    bench_projector_config,
    projector_overrides,
    write_stage1_assets,
)

DEFAULT_OUTPUT = RESULTS / "stage1_step_cpu.json"

SEED = 2
LR = 1e-4
BETAS = (0.9, 0.98)
WEIGHT_DECAY = 0.01
ALPHA = 9.0


def recipe_config(
    assets: Stage1Assets, *, steps: int, publish_every: int, max_num_frames: int
) -> dict[str, Any]:
    return {
        "model": {
            "family": "speechmapper",
            "arch": "paper",
            "config_overrides": projector_overrides(bench_projector_config()),
        },
        "target_llm": {"name": assets.llm_card},
        "dataset": {
            "family": "speechmapper_speech_features",
            "config_overrides": {"splits": {"train": [str(assets.store)]}},
            "train_split": "train",
            "valid_splits": [],
            "max_num_frames": max_num_frames,
            "example_shuffle_window": 0,
            "batch_shuffle_window": 0,
            "prefetch": 2,
            "num_parallel_calls": 1,
        },
        "loss": {"alpha": ALPHA},
        "trainer": {"max_grad_norm": 1.0, "mixed_precision": {"mode": "off"}},
        "optimizer": {
            "name": "adamw",
            "config": {"lr": LR, "betas": list(BETAS), "weight_decay": WEIGHT_DECAY},
        },
        "lr_scheduler": {"name": "passthrough", "config": None},
        "regime": {
            "num_steps": steps,
            "validate_at_start": False,
            "validate_every_n_steps": 10 * steps,
            "checkpoint_every_n_steps": 10 * steps,
            "keep_last_n_checkpoints": 1,
            "publish_metrics_every_n_steps": publish_every,
        },
        "common": {
            "no_sweep_dir": True,
            "seed": SEED,
            "metric_recorders": {"tensorboard": {"enabled": False}},
        },
    }


def child_env(assets: Stage1Assets) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FAIRSEQ2_NO_PROGRESS": "1",
        "FAIRSEQ2_DEVICE": "cpu",
        "FAIRSEQ2_USER_ASSET_DIR": str(assets.card_dir),
        "PYTHONPATH": str(REPO),
    }


def run_recipe_side(
    assets: Stage1Assets, work: Path, run: int, args: argparse.Namespace
) -> dict[str, Any]:
    out = work / f"recipe_{run}"
    config_file = work / "stage1_bench.yaml"
    config_file.write_text(
        yaml.safe_dump(
            recipe_config(
                assets,
                steps=args.steps,
                publish_every=args.warmup_steps,
                max_num_frames=args.max_num_frames,
            )
        )
    )
    command = [
        sys.executable,
        "-m",
        "recipes.stage1",
        str(out),
        "--config-file",
        str(config_file),
        "--no-rich",
    ]
    done = subprocess.run(
        command, cwd=REPO, env=child_env(assets), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    records = [
        json.loads(line)
        for line in (out / "metrics/train.jsonl").read_text().splitlines()
        if line.strip()
    ]
    timed = [r for r in records if r["Step"] > args.warmup_steps]
    seconds = sum(r["Lapse Time"] for r in timed)
    examples = sum(r["Number of Examples"] for r in timed)
    frames = sum(r["num_frames"] for r in timed)
    return {
        "steps": len(timed) * args.warmup_steps,
        "seconds": seconds,
        "examples": examples,
        "frames": frames,
        "data_seconds": sum(r["Data Time"] for r in timed),
        "compute_seconds": sum(r["Compute Time"] for r in timed),
    }


def run_loop_side(assets: Stage1Assets, args: argparse.Namespace) -> dict[str, Any]:
    """Runs in its own process; prints its figures as JSON."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_stage1_step",
            "--side",
            "loop",
            "--work",
            str(args.work),
            "--steps",
            str(args.steps),
            "--warmup-steps",
            str(args.warmup_steps),
            "--max-num-frames",
            str(args.max_num_frames),
        ],
        cwd=REPO,
        env=child_env(assets),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def hand_loop(args: argparse.Namespace) -> None:
    """The minimal loop: plain PyTorch around the same projector and loss."""
    import torch
    from fairseq2 import init_fairseq2
    from fairseq2.device import CPU
    from fairseq2.gang import create_fake_gangs
    from fairseq2.nn import BatchLayout

    from recipes.common import SpeechDatasetSection
    from speechmapper_plugin.datasets.speech_features import SpeechFeaturesDataset
    from speechmapper_plugin.llm import load_target_llm_embeddings
    from speechmapper_plugin.losses import embedding_mse_loss
    from speechmapper_plugin.models.speechmapper import create_speechmapper_model

    init_fairseq2()
    assets = write_stage1_assets(args.work)
    target = load_target_llm_embeddings(assets.llm_card)
    config = bench_projector_config()

    torch.manual_seed(SEED)
    model = create_speechmapper_model(config).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY
    )

    dataset = SpeechFeaturesDataset({"train": [assets.store]})
    prepared = dataset.prepare(
        "train",
        encode=lambda text: target.encode(text).tolist(),
        projector=config,
        max_num_frames=args.max_num_frames,
    )
    section = SpeechDatasetSection(
        max_num_frames=args.max_num_frames,
        example_shuffle_window=0,
        batch_shuffle_window=0,
        prefetch=2,
        num_parallel_calls=1,
    )
    reader = dataset.create_reader(
        "train",
        prepared,
        create_fake_gangs(CPU),
        section.read_options(seed=SEED, train=True),
    )
    batches = []
    for chunk in reader:
        batches.extend(chunk)
        if len(batches) >= args.steps:
            break
    batches = batches[: args.steps]
    table, pad = target.embeddings, target.pad_embedding

    def step(batch: Any) -> None:
        features = batch.features.to(torch.float32)
        layout = BatchLayout.of(features, batch.feature_lens.tolist())
        outputs, out_layout = model(features, layout, pre_averaged=True)
        loss = embedding_mse_loss(
            outputs,
            out_layout.seq_lens_pt,
            torch.nn.functional.embedding(batch.target_ids, table),
            batch.target_lens,
            pad,
            alpha=ALPHA,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    for batch in batches[: args.warmup_steps]:
        step(batch)
    timed = batches[args.warmup_steps :]
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "steps": len(timed),
                "seconds": seconds,
                "examples": sum(b.batch_size for b in timed),
                "frames": sum(int(b.feature_lens.sum()) for b in timed),
                "num_parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", "--repeats", dest="pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=5,
        help="steps left out of the timing; also the recipe's publish interval",
    )
    parser.add_argument("--max-num-frames", type=int, default=800)
    parser.add_argument("--side", choices=["both", "loop"], default="both")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    if args.side == "loop":
        hand_loop(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench_stage1_") as tmp:
        work = Path(tmp)
        args.work = work
        assets = write_stage1_assets(work)
        runs: dict[str, list[dict[str, Any]]] = {"recipe": [], "loop": []}
        # Warm-up is inside each run: its first steps are left out.
        for i in range(args.pairs):
            runs["recipe"].append(run_recipe_side(assets, work, i, args))
            runs["loop"].append(run_loop_side(assets, args))

    def rate(key: str, side: str) -> list[float]:
        return [r[key] / r["seconds"] for r in runs[side]]

    same_frames = all(
        r["frames"] == h["frames"] and r["examples"] == h["examples"]
        for r, h in zip(runs["recipe"], runs["loop"], strict=True)
    )
    result = {
        "benchmark": "stage-1 training throughput: recipe vs minimal PyTorch loop",
        "projector": {
            "num_parameters": runs["loop"][0]["num_parameters"],
            "config": "paper two-block shape, 512-d, 4 layers/block, FFN 2048, dropout 0.1",
        },
        "batches": {
            "max_num_frames": args.max_num_frames,
            "feature_dtype": "float16 (store), float32 (compute)",
            "timed_steps": runs["loop"][0]["steps"],
            "warmup_steps_left_out": args.warmup_steps,
            "same_examples_and_frames_on_both_sides": same_frames,
        },
        "recipe_utterances_per_s": summarize(rate("examples", "recipe")),
        "recipe_frames_per_s": summarize(rate("frames", "recipe")),
        "loop_utterances_per_s": summarize(rate("examples", "loop")),
        "loop_frames_per_s": summarize(rate("frames", "loop")),
        "recipe_data_time_share": summarize(
            [r["data_seconds"] / r["seconds"] for r in runs["recipe"]]
        ),
        "ratio": pairwise_ratio(rate("frames", "recipe"), rate("frames", "loop")),
        "target": ">= 0.95",
        "runs": runs,
        "environment": {**environment(), "torch_threads": 1},
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
