"""Stage-1 memory: the peak RSS that attaching the target LLM's embedding table
costs, against the table's size, for a Hugging Face checkpoint shaped like
Llama 3.2 1B (128256 x 2048 bf16 table, 2048-d decoder layers with an
8192-wide FFN, untied output projection) at two decoder depths: 2 layers and
16 layers (the real 1B's depth; 1.5B parameters with the output
projection untied).

Every tensor is real on disk, in safetensors shards listed by
``model.safetensors.index.json`` (as the releases are); the Llama 3 tokenizer
and the fairseq2 card are written next to them. Each measurement is a fresh
process that imports everything, resets its peak RSS (``/proc/self/clear_refs``),
then calls ``load_target_llm_embeddings`` (what the stage-1 recipe calls); the
figure is the peak RSS growth. The two depths run in turn, after a warm-up
of each. ``ratio`` = peak growth / table bytes (target <= 1.3, the same at
both depths).

    python -m benchmarks.bench_stage1_memory [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import REPO, RESULTS, environment, summarize, write_result

DEFAULT_OUTPUT = RESULTS / "stage1_memory_cpu.json"

VOCAB = 128_256
DIM = 2048
FFN = 8192
HEADS = 32
KV_HEADS = 8
DEPTHS = (2, 16)


def layer_tensors(i: int) -> dict[str, torch.Tensor]:
    kv = DIM * KV_HEADS // HEADS
    shapes = {
        "self_attn.q_proj.weight": (DIM, DIM),
        "self_attn.k_proj.weight": (kv, DIM),
        "self_attn.v_proj.weight": (kv, DIM),
        "self_attn.o_proj.weight": (DIM, DIM),
        "mlp.gate_proj.weight": (FFN, DIM),
        "mlp.up_proj.weight": (FFN, DIM),
        "mlp.down_proj.weight": (DIM, FFN),
        "input_layernorm.weight": (DIM,),
        "post_attention_layernorm.weight": (DIM,),
    }
    # The values do not matter to what is measured; the bytes are on disk.
    return {
        f"model.layers.{i}.{k}": torch.full(s, 0.01, dtype=torch.bfloat16)
        for k, s in shapes.items()
    }


def write_checkpoints(root: Path) -> dict[int, str]:
    """Writes the shards once; each depth's directory links the ones it holds."""
    from safetensors.torch import save_file

    from speechmapper_plugin.tiny_assets import (
        LLAMA3_ROPE_THETA,
        TinyLlamaDims,
        build_llama3_tokenizer,
        fairseq2_llama_config,
        training_sentences,
        write_card_file,
    )
    from speechmapper_plugin.tiny_assets.llama3_tokenizer import LLAMA3_PAD

    shards = root / "shards"
    shards.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(VOCAB, DIM, generator=generator).to(torch.bfloat16)
    save_file({"model.embed_tokens.weight": table}, shards / "embed.safetensors")
    del table
    save_file(
        {
            "model.norm.weight": torch.ones(DIM, dtype=torch.bfloat16),
            "lm_head.weight": torch.full((VOCAB, DIM), 0.01, dtype=torch.bfloat16),
        },
        shards / "head.safetensors",
    )
    for i in range(max(DEPTHS)):
        save_file(layer_tensors(i), shards / f"layer_{i:02d}.safetensors")

    sentences = training_sentences(200)
    cards = []
    for depth in DEPTHS:
        directory = root / f"llama_{depth}_layers"
        directory.mkdir()
        files = ["embed.safetensors", "head.safetensors"]
        files += [f"layer_{i:02d}.safetensors" for i in range(depth)]
        weight_map: dict[str, str] = {}
        total = 0
        for name in files:
            os.link(shards / name, directory / name)
            total += (shards / name).stat().st_size
        weight_map["model.embed_tokens.weight"] = "embed.safetensors"
        weight_map["model.norm.weight"] = "head.safetensors"
        weight_map["lm_head.weight"] = "head.safetensors"
        for i in range(depth):
            for key in _layer_keys(i):
                weight_map[key] = f"layer_{i:02d}.safetensors"
        (directory / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )
        (directory / "config.json").write_text(
            json.dumps(
                {
                    "architectures": ["LlamaForCausalLM"],
                    "model_type": "llama",
                    "hidden_size": DIM,
                    "intermediate_size": FFN,
                    "num_hidden_layers": depth,
                    "num_attention_heads": HEADS,
                    "num_key_value_heads": KV_HEADS,
                    "vocab_size": VOCAB,
                    "rope_theta": LLAMA3_ROPE_THETA,
                    "tie_word_embeddings": False,
                    "torch_dtype": "bfloat16",
                }
            )
        )
        build_llama3_tokenizer(directory, sentences)
        dims = TinyLlamaDims(
            model_dim=DIM,
            num_layers=depth,
            num_attn_heads=HEADS,
            num_key_value_heads=KV_HEADS,
            intermediate_size=FFN,
            max_seq_len=8192,
        )
        cards.append(
            {
                "name": f"bench_llama_1b_{depth}_layers",
                "model_family": "llama",
                "model_config": fairseq2_llama_config(VOCAB, LLAMA3_ROPE_THETA, dims),
                "checkpoint": str(directory),
                "tokenizer": str(directory),
                "tokenizer_family": "llama",
                "tokenizer_config": {"impl": "hg", "use_eot": True},
                "speechmapper_pad_token": LLAMA3_PAD,
            }
        )
    write_card_file(root / "cards" / "llms.yaml", cards)
    return {depth: str(card["name"]) for depth, card in zip(DEPTHS, cards, strict=True)}


_LAYER_SUFFIXES = (
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
)


def _layer_keys(i: int) -> list[str]:
    return [f"model.layers.{i}.{s}" for s in _LAYER_SUFFIXES]


def measure(card: str) -> None:
    """In a fresh process: peak RSS growth of loading the target embeddings."""
    import gc

    from fairseq2 import init_fairseq2

    from benchmarks.harness import peak_rss_bytes, reset_peak_rss, rss_bytes
    from speechmapper_plugin.llm import load_target_llm_embeddings

    init_fairseq2()
    gc.collect()
    reset_peak_rss()
    before = rss_bytes()
    target = load_target_llm_embeddings(card)
    peak = peak_rss_bytes()
    after = rss_bytes()
    table = target.embeddings
    print(
        json.dumps(
            {
                "table_bytes": table.numel() * table.element_size(),
                "table_shape": list(table.shape),
                "table_dtype": str(table.dtype),
                "peak_growth_bytes": peak - before,
                "rss_growth_after_bytes": after - before,
            }
        )
    )


def run_child(card: str, card_dir: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_stage1_memory", "--measure", card],
        cwd=REPO,
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "FAIRSEQ2_USER_ASSET_DIR": str(card_dir),
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    if args.measure is not None:
        measure(args.measure)
        return

    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        root = Path(tmp)
        cards = write_checkpoints(root)
        sizes = {
            depth: sum(
                p.stat().st_size
                for p in (root / f"llama_{depth}_layers").glob("*.safetensors")
            )
            for depth in DEPTHS
        }
        runs: dict[int, list[dict[str, Any]]] = {d: [] for d in DEPTHS}
        for round_ in range(args.repeats + 1):  # the first round is a warm-up
            for depth in DEPTHS:
                figures = run_child(cards[depth], root / "cards")
                if round_:
                    runs[depth].append(figures)

    mib = 1024 * 1024
    table_bytes = runs[DEPTHS[0]][0]["table_bytes"]
    result: dict[str, Any] = {
        "benchmark": "stage-1 target loading: peak RSS growth vs the embedding table",
        "table": {
            "shape": runs[DEPTHS[0]][0]["table_shape"],
            "dtype": runs[DEPTHS[0]][0]["table_dtype"],
            "MiB": round(table_bytes / mib, 1),
        },
        "target": "<= 1.3, independent of decoder depth",
    }
    for depth in DEPTHS:
        peaks = [r["peak_growth_bytes"] for r in runs[depth]]
        result[f"{depth}_layers"] = {
            "checkpoint_GiB_on_disk": round(sizes[depth] / mib / 1024, 2),
            "num_parameters": _num_parameters(depth),
            "peak_growth_MiB": summarize([p / mib for p in peaks], 1),
            "ratio": summarize([p / table_bytes for p in peaks], 3),
            "rss_growth_after_MiB": summarize(
                [r["rss_growth_after_bytes"] / mib for r in runs[depth]], 1
            ),
        }
    result["environment"] = environment()
    write_result(args.output, result)


def _num_parameters(depth: int) -> int:
    per_layer = sum(t.numel() for t in layer_tensors(0).values())
    return 2 * VOCAB * DIM + DIM + depth * per_layer


if __name__ == "__main__":
    main()
