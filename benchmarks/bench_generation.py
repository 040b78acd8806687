"""Times incremental decoding from embeddings against recomputing full passes.

Both decode the same prompts (random "speech" embeddings followed by a short
text suffix) greedily with the same small llama, for exactly ``--new-tokens``
tokens (stop tokens are blocked, the repetition guard is off, so no run ends
early):

- incremental: ``generate_from_embeddings`` (one prefill, then one position
  per step over fairseq2's ``IncrementalStateBag``);
- full: at every step, one full forward pass over the prompt and all tokens
  generated so far (what decoding costs without a KV cache).

Runs are interleaved and the median of each is reported, so load from other
processes affects both alike; the two must produce identical tokens.

    python benchmarks/bench_generation.py
    python benchmarks/bench_generation.py --repeats 9 --output out.json
    python benchmarks/bench_generation.py --device cuda --dtype bfloat16 \
        --output benchmarks/results/generation_cuda.json

Writes ``benchmarks/results/generation_cpu.json``; ``speedup`` is
full / incremental (above 1.0: incremental decoding is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fairseq2 import init_fairseq2
from fairseq2.data_type import set_dtype
from fairseq2.models.llama import LLaMAConfig, create_llama_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor

from speechmapper_plugin.generation import (
    GenerationConfig,
    RepetitionGuardConfig,
    generate_from_embeddings,
)

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "generation_cpu.json"

STOP_TOKEN = 0


def build_model(args: argparse.Namespace, device: torch.device) -> TransformerLM:
    config = LLaMAConfig(
        model_dim=args.model_dim,
        max_seq_len=1024,
        vocab_size=args.vocab_size,
        num_layers=args.num_layers,
        num_attn_heads=8,
        num_key_value_heads=4,
        ffn_inner_dim=args.model_dim * 4,
        ffn_inner_dim_multiple_of=64,
    )
    torch.manual_seed(0)
    with set_dtype(getattr(torch, args.dtype)):
        model = create_llama_model(config)
    return model.to(device).eval()


def make_prompts(
    args: argparse.Namespace, model: TransformerLM, device: torch.device
) -> tuple[Tensor, list[int]]:
    """Right-padded prompts of ``--batch-size`` rows with lengths spread over
    ``--prompt-len`` .. 1.5 x ``--prompt-len``."""
    generator = torch.Generator().manual_seed(1)
    step = args.prompt_len // (2 * max(args.batch_size - 1, 1))
    lens = [args.prompt_len + i * step for i in range(args.batch_size)]
    dtype = next(model.parameters()).dtype
    embeds = torch.randn(
        args.batch_size, max(lens), args.model_dim, generator=generator
    )
    return embeds.to(device, dtype), lens


@torch.inference_mode()
def decode_incremental(
    model: TransformerLM, prompts: Tensor, lens: list[int], new_tokens: int
) -> list[list[int]]:
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        repetition_guard=RepetitionGuardConfig(enabled=False),
    )
    results = generate_from_embeddings(
        model, prompts, lens, stop_token_ids=[STOP_TOKEN], config=config
    )
    return [r.tokens for r in results]


@torch.inference_mode()
def decode_full(
    model: TransformerLM, prompts: Tensor, lens: list[int], new_tokens: int
) -> list[list[int]]:
    """Greedy decoding with one full (cache-free) forward pass per step."""
    batch_size = prompts.size(0)
    width = max(lens) + new_tokens
    seqs = prompts.new_zeros((batch_size, width, prompts.size(2)))
    seqs[:, : prompts.size(1)] = prompts
    seq_lens = list(lens)
    rows = torch.arange(batch_size, device=prompts.device)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    for _ in range(new_tokens):
        current = seqs[:, : max(seq_lens)]
        layout = BatchLayout(current.shape[:2], seq_lens, device=current.device)
        hidden = model.decoder(current, layout)
        last = torch.tensor(seq_lens, device=prompts.device) - 1
        logits = model.final_proj(hidden[rows, last])
        logits[:, STOP_TOKEN] = -torch.inf
        next_tokens = logits.argmax(dim=-1)
        embeds, _ = model.decoder_frontend(
            next_tokens.unsqueeze(1), BatchLayout.of(next_tokens.unsqueeze(1))
        )
        for row, token in enumerate(next_tokens.tolist()):
            seqs[row, seq_lens[row]] = embeds[row, 0]
            seq_lens[row] += 1
            tokens[row].append(token)
    return tokens


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dim", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 keeps timings stable on a shared machine, where OpenMP threads spin against other processes",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    init_fairseq2()

    torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    model = build_model(args, device)
    prompts, lens = make_prompts(args, model, device)

    def incremental() -> list[list[int]]:
        return decode_incremental(model, prompts, lens, args.new_tokens)

    def full() -> list[list[int]]:
        return decode_full(model, prompts, lens, args.new_tokens)

    # Warm-up (allocator, kernels), then interleaved timed runs.
    incremental()
    full()

    times: dict[str, list[float]] = {"incremental": [], "full": []}
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in (("incremental", incremental), ("full", full)):
            seconds, outputs[name] = timed(fn, device)
            times[name].append(seconds)

    median = {name: statistics.median(values) for name, values in times.items()}
    num_tokens = args.new_tokens * args.batch_size

    result = {
        "benchmark": "greedy decoding from embeddings: incremental vs full recompute",
        "model": {
            "family": "llama",
            "model_dim": args.model_dim,
            "num_layers": args.num_layers,
            "vocab_size": args.vocab_size,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "dtype": args.dtype,
        },
        "batch_size": args.batch_size,
        "prompt_lens": lens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "seconds": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "median_seconds": {name: round(t, 4) for name, t in median.items()},
        "tokens_per_second": {
            name: round(num_tokens / t, 1) for name, t in median.items()
        },
        "speedup": round(median["full"] / median["incremental"], 2),
        "same_tokens": outputs["incremental"] == outputs["full"],
        "environment": {
            "device": str(device),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    }

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
