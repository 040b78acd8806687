"""Generation from embeddings: batched against one-by-one decoding, and ours
against transformers' ``generate(inputs_embeds=...)``.

1. batched vs one-by-one: a mid-size random Llama (fairseq2's ``llama``
   family, 512-d, 8 layers, 32k vocabulary: 50M parameters) greedily decodes 16
   right-padded prompts of random "speech" embeddings for exactly
   ``--new-tokens`` tokens, once as one batch of 16 and once as 16 batches of
   one; the tokens must be identical. ``speedup`` = one-by-one time / batched
   time, for prompts of equal length (64; target >= 5 on CPU) and of lengths
   spread over 64..94 (target >= 4, issue 20: the batch reads the
   right-aligned prompts in one forward pass, its padding masked, then
   generates every row from the same position; before, it stepped one
   position at a time through the part of the longer prompts past the
   shortest one). ``streaming_cost``: the uneven batch decoded with a step
   callback (what the server's token-by-token streaming passes; it collects
   each step's tokens) ÷ without, pair by pair (target ~1: streaming costs
   one device-to-host copy of the step's tokens).
2. ours vs transformers: a tiny Llama saved by transformers
   (``LlamaForCausalLM.save_pretrained``, SDPA attention), loaded by fairseq2
   through its card for our ``generate_from_embeddings`` and by transformers for
   ``generate(inputs_embeds=..., do_sample=False)``, on the same 4 prompts of
   equal length, 5 x ``--repeats`` pairs; the tokens must be identical.
   ``ratio`` = our time / transformers' time (target <= 1.0: no slower).

Both sides of each ratio run in turn after one warm-up run each, one thread;
medians, spreads and pair-by-pair ratios are reported.

``--clock cpu`` times this process's CPU time (``time.process_time``) instead
of wall time: other processes on a shared machine disturb it less.

    python -m benchmarks.bench_generation [--repeats 5] [--clock cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from fairseq2 import init_fairseq2  # noqa: E402
from fairseq2.assets import AssetCard  # noqa: E402
from fairseq2.models import load_model  # noqa: E402
from fairseq2.models.llama import LLaMAConfig, create_llama_model  # noqa: E402
from fairseq2.models.transformer_lm import TransformerLM  # noqa: E402
from torch import Tensor  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    CLOCKS,
    RESULTS,
    environment,
    pairwise_ratio,
    summarize,
    time_interleaved,
    write_result,
)
from speechmapper_plugin.generation import (  # noqa: E402
    DecodingStep,
    GenerationConfig,
    RepetitionGuardConfig,
    StepCallback,
    generate_from_embeddings,
)
from speechmapper_plugin.tiny_assets import (  # noqa: E402
    LLAMA3_ROPE_THETA,
    TINY_LLAMA_DIMS,
    build_hf_llama,
    fairseq2_llama_config,
)

DEFAULT_OUTPUT = RESULTS / "generation_cpu.json"

STOP_TOKEN = 0

"""What times each run of the batched-vs-one-by-one comparison (``--clock``)."""

TARGETS = {"equal_lengths": ">= 5", "spread_lengths": ">= 4"}
"""The batched ÷ one-by-one speed-up each prompt-length variant must reach."""


def greedy_config(new_tokens: int) -> GenerationConfig:
    """Exactly ``new_tokens`` tokens: the stop token is blocked until then and
    the repetition guard is off, so no row ends early."""
    return GenerationConfig(
        max_new_tokens=new_tokens,
        min_gen_len=new_tokens + 1,
        repetition_guard=RepetitionGuardConfig(enabled=False),
    )


def ours(
    model: TransformerLM,
    embeds: Tensor,
    lens: list[int],
    new_tokens: int,
    on_step: StepCallback | None = None,
) -> list[list[int]]:
    results = generate_from_embeddings(
        model,
        embeds,
        lens,
        stop_token_ids=[STOP_TOKEN],
        config=greedy_config(new_tokens),
        on_step=on_step,
    )
    return [r.tokens for r in results]


def streamed(
    model: TransformerLM, embeds: Tensor, lens: list[int], new_tokens: int
) -> list[list[int]]:
    """:func:`ours` with a step callback; the tokens it collected."""
    tokens: list[list[int]] = [[] for _ in lens]

    def collect(step: DecodingStep) -> None:
        for example, token in zip(step.examples, step.tokens, strict=True):
            if token is not None:
                tokens[example].append(token)

    ours(model, embeds, lens, new_tokens, collect)
    return tokens


MID_LLAMA = LLaMAConfig(
    model_dim=512,
    max_seq_len=1024,
    vocab_size=32_000,
    num_layers=8,
    num_attn_heads=8,
    num_key_value_heads=4,
    ffn_inner_dim=512 * 4,
    ffn_inner_dim_multiple_of=64,
)
"""The mid-size random Llama of the decoding benchmarks (also
``bench_greedy_vs_beam``'s ``mid`` model)."""


def random_llama(config: LLaMAConfig) -> TransformerLM:
    """A fairseq2 Llama with seeded random weights, in eval mode."""
    torch.manual_seed(0)
    return create_llama_model(config).eval()


def random_prompts(
    config: LLaMAConfig, batch_size: int
) -> tuple[Tensor, dict[str, list[int]]]:
    """Right-padded random "speech" prompts and their two length variants:
    lengths spread over 64.. (two apart), and the same prompts cut to one
    common length (no prompt is still being read while others generate)."""
    generator = torch.Generator().manual_seed(1)
    spread = [64 + 2 * i for i in range(batch_size)]
    embeds = torch.randn(
        len(spread), max(spread), config.model_dim, generator=generator
    )
    equal = [min(spread)] * len(spread)
    return embeds, {"equal_lengths": equal, "spread_lengths": spread}


def describe_model(config: LLaMAConfig, model: TransformerLM) -> dict[str, Any]:
    return {
        "family": "llama (fairseq2)",
        "model_dim": config.model_dim,
        "num_layers": config.num_layers,
        "vocab_size": config.vocab_size,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
    }


def timed_sides(
    lens: list[int], seconds: dict[str, list[float]], num_tokens: int
) -> dict[str, Any]:
    """The timings of each side of a comparison on one length variant (the
    caller adds the ratio and the token check)."""
    return {
        "prompt_lens": lens,
        "seconds": {side: summarize(s) for side, s in seconds.items()},
        "tokens_per_second": {
            side: summarize([num_tokens / x for x in s]) for side, s in seconds.items()
        },
    }


def batched_vs_one_by_one(args: argparse.Namespace) -> dict[str, Any]:
    config = MID_LLAMA
    model = random_llama(config)
    embeds, variants = random_prompts(config, args.batch_size)

    def batched(lens: list[int]) -> Callable[[], list[list[int]]]:
        return lambda: ours(model, embeds[:, : max(lens)], lens, args.new_tokens)

    def one_by_one(lens: list[int]) -> Callable[[], list[list[int]]]:
        def run() -> list[list[int]]:
            tokens = []
            for row, n in enumerate(lens):
                tokens += ours(model, embeds[row : row + 1, :n], [n], args.new_tokens)
            return tokens

        return run

    fns = {}
    for name, lens in variants.items():
        fns[f"{name}/batched"] = batched(lens)
        fns[f"{name}/one_by_one"] = one_by_one(lens)
    uneven = variants["spread_lengths"]
    fns["spread_lengths/streamed"] = lambda: streamed(
        model, embeds, uneven, args.new_tokens
    )
    seconds, outputs = time_interleaved(fns, args.repeats, clock=CLOCKS[args.clock])

    num_tokens = args.new_tokens * args.batch_size
    result: dict[str, Any] = {
        "model": describe_model(config, model),
        "batch_size": args.batch_size,
        "new_tokens": args.new_tokens,
        "clock": args.clock,
    }
    for name, lens in variants.items():
        b, o = seconds[f"{name}/batched"], seconds[f"{name}/one_by_one"]
        result[name] = {
            **timed_sides(lens, {"batched": b, "one_by_one": o}, num_tokens),
            "speedup": pairwise_ratio(o, b),
            "target": TARGETS[name],
            "same_tokens": outputs[f"{name}/batched"] == outputs[f"{name}/one_by_one"],
        }
    s, b = seconds["spread_lengths/streamed"], seconds["spread_lengths/batched"]
    result["streaming_cost"] = {
        "seconds": {"streamed": summarize(s)},
        "ratio": pairwise_ratio(s, b),
        "target": "~1",
        "same_tokens": outputs["spread_lengths/streamed"]
        == outputs["spread_lengths/batched"],
    }
    return result


def ours_vs_transformers(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from transformers import LlamaForCausalLM

    vocab_size = 512
    hf_dir = work / "tiny_llama"
    build_hf_llama(
        vocab_size, seed=3, rope_theta=LLAMA3_ROPE_THETA, bos=1, eos=2
    ).save_pretrained(hf_dir, safe_serialization=True)
    card = AssetCard(
        "bench_tiny_llama",
        {
            "name": "bench_tiny_llama",
            "model_family": "llama",
            "model_config": fairseq2_llama_config(vocab_size, LLAMA3_ROPE_THETA),
            "checkpoint": str(hf_dir),
        },
    )
    fs2 = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(fs2, TransformerLM)
    fs2.eval()
    hf = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="sdpa").eval()

    generator = torch.Generator().manual_seed(2)
    num_prompts, prompt_len = 4, 64
    embeds = torch.randn(
        num_prompts, prompt_len, TINY_LLAMA_DIMS.model_dim, generator=generator
    )
    mask = torch.ones(num_prompts, prompt_len, dtype=torch.long)

    def run_ours() -> list[list[int]]:
        return ours(fs2, embeds, [prompt_len] * num_prompts, args.new_tokens)

    @torch.inference_mode()
    def run_transformers() -> list[list[int]]:
        out = hf.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=STOP_TOKEN,
            pad_token_id=STOP_TOKEN,
        )
        return [row.tolist() for row in out]

    fns: dict[str, Callable[[], list[list[int]]]] = {
        "ours": run_ours,
        "transformers": run_transformers,
    }
    # A tiny model decodes in ~0.1 s, where a shared machine's noise is large:
    # five times the pairs (still a few seconds).
    seconds, outputs = time_interleaved(fns, 5 * args.repeats)
    num_tokens = args.new_tokens * num_prompts
    return {
        "model": {
            "family": "llama, saved by transformers (safetensors)",
            "model_dim": TINY_LLAMA_DIMS.model_dim,
            "num_layers": TINY_LLAMA_DIMS.num_layers,
            "vocab_size": vocab_size,
            "transformers_attention": "sdpa",
            "dtype": "float32",
        },
        "batch_size": num_prompts,
        "prompt_len": prompt_len,
        "new_tokens": args.new_tokens,
        "seconds": {k: summarize(v) for k, v in seconds.items()},
        "tokens_per_second": {
            k: summarize([num_tokens / s for s in v]) for k, v in seconds.items()
        },
        "ratio": pairwise_ratio(seconds["ours"], seconds["transformers"]),
        "target": "<= 1.0",
        "same_tokens": outputs["ours"] == outputs["transformers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    init_fairseq2()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_generation_") as tmp:
        result = {
            "benchmark": "greedy decoding from embeddings",
            "batched_vs_one_by_one": batched_vs_one_by_one(args),
            "ours_vs_transformers": ours_vs_transformers(args, Path(tmp)),
            "environment": environment(),
        }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
