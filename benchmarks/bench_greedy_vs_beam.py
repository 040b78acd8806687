"""Greedy decoding against beam search with one beam, on the same inputs.

``generate_from_embeddings`` decodes greedily for ``beam_size: 1``; the beam
side runs ``BeamSearch`` itself on the same validated inputs.

Issue 9 asks to keep the separate greedy loop only if it is measurably faster
than beam search with ``beam_size=1`` (which gives the same tokens). Both
decode the same right-padded prompts of random "speech" embeddings for exactly
``--new-tokens`` tokens (the stop token blocked until then, the repetition
guard on, as in inference), with a random fairseq2 Llama:

* ``mid``: 512-d, 8 layers, 32k vocabulary (the model of ``bench_generation``),
  where the forward passes dominate;
* ``tiny``: 64-d, 2 layers, 512 vocabulary, where the search's own per-step
  work (Python bookkeeping, top-k over the candidates) dominates.

Each model is timed on prompts of equal length (64) and of lengths spread over
64..94. Both sides run in turn after one warm-up each, one thread; medians and
pair-by-pair ratios (``beam / greedy``: above 1 means greedy is faster).
``--clock cpu`` times this process's CPU time (``time.process_time``), which
other processes on a shared machine disturb less than wall time.

    python -m benchmarks.bench_greedy_vs_beam [--repeats 5] [--clock cpu]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fairseq2 import init_fairseq2
from fairseq2.models.llama import LLaMAConfig
from fairseq2.models.transformer_lm import TransformerLM
from torch import Tensor

from benchmarks.bench_generation import (
    MID_LLAMA,
    describe_model,
    random_llama,
    random_prompts,
    timed_sides,
)
from benchmarks.harness import (
    CLOCKS,
    RESULTS,
    environment,
    pairwise_ratio,
    time_interleaved,
    write_result,
)
from speechmapper_plugin.generation import GenerationConfig, generate_from_embeddings
from speechmapper_plugin.generation.beam import BeamSearch
from speechmapper_plugin.generation.inputs import LengthsLike, prepare_inputs

DEFAULT_OUTPUT = RESULTS / "greedy_vs_beam_cpu.json"

STOP_TOKEN = 0

MODELS = {
    "mid": MID_LLAMA,
    "tiny": LLaMAConfig(
        model_dim=64,
        max_seq_len=1024,
        vocab_size=512,
        num_layers=2,
        num_attn_heads=4,
        num_key_value_heads=2,
        ffn_inner_dim=128,
        ffn_inner_dim_multiple_of=8,
    ),
}

Search = Callable[..., Any]


def exact_length_config(new_tokens: int) -> GenerationConfig:
    """Exactly ``new_tokens`` tokens per row (the stop token is blocked until
    the budget ends); ``beam_size`` is 1 for both searches."""
    return GenerationConfig(
        beam_size=1,
        max_new_tokens=new_tokens,
        min_gen_len=new_tokens + 1,
    )


@torch.inference_mode()
def beam_search(
    model: TransformerLM,
    prompt_embeds: Tensor,
    prompt_lens: LengthsLike,
    *,
    stop_token_ids: list[int],
    config: GenerationConfig,
) -> Any:
    """Beam search itself: the entry point takes the greedy path for one beam."""
    inputs = prepare_inputs(
        model,
        prompt_embeds,
        prompt_lens,
        stop_token_ids=stop_token_ids,
        config=config,
        num_speech_positions=None,
    )
    return BeamSearch(model, inputs, config).run()


def decode(
    search: Search,
    model: TransformerLM,
    embeds: Tensor,
    lens: list[int],
    new_tokens: int,
) -> list[list[int]]:
    results = search(
        model,
        embeds[:, : max(lens)],
        lens,
        stop_token_ids=[STOP_TOKEN],
        config=exact_length_config(new_tokens),
    )
    return [r.tokens for r in results]


def compare(name: str, args: argparse.Namespace) -> dict[str, Any]:
    config = MODELS[name]
    model = random_llama(config)
    embeds, variants = random_prompts(config, args.batch_size)

    def run(search: Search, lens: list[int]) -> Callable[[], list[list[int]]]:
        return lambda: decode(search, model, embeds, lens, args.new_tokens)

    fns: dict[str, Callable[[], list[list[int]]]] = {}
    for variant, lens in variants.items():
        fns[f"{variant}/greedy"] = run(generate_from_embeddings, lens)
        fns[f"{variant}/beam1"] = run(beam_search, lens)
    seconds, outputs = time_interleaved(fns, args.repeats, clock=CLOCKS[args.clock])

    num_tokens = args.new_tokens * args.batch_size
    result: dict[str, Any] = {"model": describe_model(config, model)}
    for variant, lens in variants.items():
        g, b = seconds[f"{variant}/greedy"], seconds[f"{variant}/beam1"]
        result[variant] = {
            **timed_sides(lens, {"greedy": g, "beam1": b}, num_tokens),
            "beam1_over_greedy": pairwise_ratio(b, g),
            "same_tokens": outputs[f"{variant}/greedy"] == outputs[f"{variant}/beam1"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    init_fairseq2()
    torch.set_num_threads(args.threads)

    result: dict[str, Any] = {
        "benchmark": "greedy search vs beam search with beam_size=1",
        "batch_size": args.batch_size,
        "new_tokens": args.new_tokens,
        "clock": args.clock,
    }
    for name in args.models:
        result[name] = compare(name, args)
    result["environment"] = environment()
    write_result(args.output, result)


if __name__ == "__main__":
    main()
