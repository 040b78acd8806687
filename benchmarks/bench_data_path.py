"""Data path headroom: the training data pipelines alone (feature store ->
shuffled, length-bucketed, padded batches on the device) in frames/s, against
the frames/s stage-1 training consumes.

- stage 1: ``SpeechFeaturesDataset`` reader (the recipe's read options at
  their defaults: 4 parallel loads, prefetch 4) over a store of 128 random
  fp16 utterances (6 to 14 s), one full pass, ``batch.to(device)``;
- stage 2: ``InstructionDataset`` reader over the same store, one instruction
  per utterance (transcription prompt, Llama 3 chat template), one full pass;
- training: the stage-1 step (29M-parameter projector, forward, loss, backward,
  AdamW) on the same stage-1 batches, the consumer both pipelines must outrun.
  A stage-2 step runs the same projector and an LLM on top, so it consumes
  fewer frames/s: the stage-1 figure is the harder bar for the stage-2
  pipeline.

The three run in turn after a warm-up of each; ``headroom`` = pipeline frames/s
/ training frames/s, pair by pair (target >= 10).

    python -m benchmarks.bench_data_path [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from fairseq2 import init_fairseq2
from fairseq2.device import CPU
from fairseq2.gang import create_fake_gangs
from fairseq2.nn import BatchLayout

from benchmarks.harness import (
    RESULTS,
    environment,
    pairwise_ratio,
    summarize,
    time_interleaved,
    write_result,
)
from benchmarks.stage1_assets import bench_projector_config, write_stage1_assets
from recipes.common import SpeechDatasetSection
from speechmapper_plugin.data.instructions.example import InstructionExample
from speechmapper_plugin.datasets.instructions import InstructionDataset
from speechmapper_plugin.datasets.speech_features import SpeechFeaturesDataset
from speechmapper_plugin.llm import SPEECH_PLACEHOLDER, load_target_llm_embeddings
from speechmapper_plugin.llm.cards import retrieve_llm_card
from speechmapper_plugin.llm.chat_template import chat_template_for_card
from speechmapper_plugin.losses import embedding_mse_loss
from speechmapper_plugin.models.speechmapper import create_speechmapper_model

DEFAULT_OUTPUT = RESULTS / "data_path_cpu.json"

MAX_NUM_FRAMES = 800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        work = Path(tmp)
        assets = write_stage1_assets(work)
        import os

        os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(assets.card_dir)
        init_fairseq2()
        result = run(args, work, assets)
    write_result(args.output, result)


def run(args: argparse.Namespace, work: Path, assets: Any) -> dict[str, Any]:
    gangs = create_fake_gangs(CPU)
    section = SpeechDatasetSection(max_num_frames=MAX_NUM_FRAMES)
    options = section.read_options(seed=2, train=True)
    config = bench_projector_config()
    target = load_target_llm_embeddings(assets.llm_card)

    stage1 = SpeechFeaturesDataset({"train": [assets.store]})
    prepared1 = stage1.prepare(
        "train",
        encode=lambda text: target.encode(text).tolist(),
        projector=config,
        max_num_frames=MAX_NUM_FRAMES,
    )

    instructions = work / "instructions.jsonl"
    instructions.write_text(
        "".join(
            InstructionExample(
                id=f"utt{i:04d}",
                instruction=f"Transcribe the audio. {SPEECH_PLACEHOLDER}",
                response=text,
                speech=f"utt{i:04d}",
                task="asr",
                transcript=text,
            ).to_json()
            + "\n"
            for i, text in enumerate(assets.sentences)
        )
    )
    card = retrieve_llm_card(assets.llm_card)
    stage2 = InstructionDataset({"train": [instructions]}, [assets.store])
    prepared2 = stage2.prepare(
        "train",
        targets=target,
        template=chat_template_for_card(card),
        projector=config,
        max_seq_len=4096,
        max_num_frames=MAX_NUM_FRAMES,
    )

    def drain(reader: Any) -> int:
        frames = 0
        for chunk in reader:
            for batch in chunk:
                batch.to(CPU)
                frames += int(batch.feature_lens.sum())
        return frames

    def read_stage1() -> int:
        return drain(stage1.create_reader("train", prepared1, gangs, options))

    def read_stage2() -> int:
        return drain(stage2.create_reader(prepared2, gangs, options))

    torch.manual_seed(2)
    model = create_speechmapper_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = []
    for chunk in stage1.create_reader("train", prepared1, gangs, options):
        batches.extend(chunk)
        if len(batches) >= args.train_steps:
            break
    batches = batches[: args.train_steps]

    def train() -> int:
        frames = 0
        for batch in batches:
            features = batch.features.to(torch.float32)
            layout = BatchLayout.of(features, batch.feature_lens.tolist())
            outputs, out_layout = model(features, layout, pre_averaged=True)
            loss = embedding_mse_loss(
                outputs,
                out_layout.seq_lens_pt,
                target.embed(batch.target_ids),
                batch.target_lens,
                target.pad_embedding,
                alpha=9.0,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            frames += int(batch.feature_lens.sum())
        return frames

    seconds, frames = time_interleaved(
        {
            "stage1_pipeline": read_stage1,
            "stage2_pipeline": read_stage2,
            "training": train,
        },
        args.repeats,
    )
    rates = {k: [frames[k] / s for s in v] for k, v in seconds.items()}
    return {
        "benchmark": "data pipelines alone vs stage-1 training consumption (frames/s)",
        "store": {
            "utterances": len(prepared1.examples),
            "dtype": "float16",
            "dim": config.input_dim,
            "frames_per_pass": frames["stage1_pipeline"],
        },
        "read_options": {
            "max_num_frames": MAX_NUM_FRAMES,
            "num_parallel_calls": options.num_parallel_calls,
            "prefetch": options.prefetch,
        },
        "frames_per_second": {k: summarize(v, 1) for k, v in rates.items()},
        "headroom_stage1": pairwise_ratio(rates["stage1_pipeline"], rates["training"]),
        "headroom_stage2": pairwise_ratio(rates["stage2_pipeline"], rates["training"]),
        "target": ">= 10",
        "environment": environment(),
    }


if __name__ == "__main__":
    main()
