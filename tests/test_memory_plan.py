"""The memory plan's inputs: parameter counts of the real architectures
(built on the meta device) against hand-computed counts from the public
configs, its FLOPs formula against torch's FlopCounterMode on a real
forward + backward, and one table row worked by hand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from fairseq2.models.llama import get_llama_model_hub
from fairseq2.nn import BatchLayout
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.memory_plan import (
    RESERVE_GB,
    build_plan,
    llama_ffn_dim,
    llama_layer_bytes,
    llama_parameters,
    projector_flops_per_frame,
    projector_layer_bytes,
    projector_parameters,
)
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub


def hf_llama_parameters(
    hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int
) -> int:
    """Untied Llama from its Hugging Face config numbers."""
    kv = hidden // heads * kv_heads
    attn = 2 * hidden * hidden + 2 * hidden * kv
    ffn = 3 * hidden * intermediate
    return 2 * vocab * hidden + layers * (attn + ffn + 2 * hidden) + hidden


def test_llama_3_1_8b_has_8_03b_parameters() -> None:
    config = get_llama_model_hub().get_arch_config("llama3_1_8b")
    expected = hf_llama_parameters(4096, 32, 32, 8, 14_336, 128_256)
    assert expected == 8_030_261_248  # the published "8.03B"
    assert llama_parameters(config) == expected
    assert llama_ffn_dim(config) == 14_336


def test_eurollm_9b_parameters() -> None:
    config = get_llama_model_hub().get_arch_config("eurollm_9b")
    assert llama_parameters(config) == hf_llama_parameters(
        4096, 42, 32, 8, 12_288, 128_000
    )


def test_paper_projector_parameters() -> None:
    """Conv (k6) -> 6 pre-LN layers -> LN -> Linear per block, then 4096->4096."""

    def block(d_in: int, h: int, f: int, d_out: int) -> int:
        conv = d_in * h * 6 + h
        layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        return conv + 6 * layer + 2 * h + (h * d_out + d_out)

    expected = (
        block(1024, 1024, 1536, 2048)
        + block(2048, 2048, 3072, 4096)
        + (4096 * 4096 + 4096)
    )
    config = get_speechmapper_model_hub().get_arch_config("paper")
    params = projector_parameters(config)
    assert params == expected == 279_134_208
    assert 277e6 <= params <= 279.5e6  # the paper's 277M, README's 279.1M


def test_flops_formula_matches_flop_counter() -> None:
    """On the tiny projector, for real (CPU): 4 rows of 400 frames. The math
    attention kernel runs its matmuls where FlopCounterMode sees them (it has
    no formula for the fused CPU kernel)."""
    hub = get_speechmapper_model_hub()
    config = replace(hub.get_arch_config("tiny"), dropout_p=0.0)
    torch.manual_seed(0)
    model = hub.create_new_model(config, device=torch.device("cpu")).train()
    x = torch.randn(4, 400, config.input_dim)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        y, _ = model(x, BatchLayout.of(x, [400] * 4), pre_averaged=True)
        y.sum().backward()
    counted = counter.get_total_flops()
    estimated = 4 * 400 * projector_flops_per_frame(config, 400)
    # the formula ignores the conv edges (199, then 98 positions, not 200, 100)
    assert estimated == pytest.approx(counted, rel=0.05)
    assert estimated > counted


def test_paper_projector_flops_match_the_measured_figure() -> None:
    """README/config header: FlopCounterMode counted 513 GFLOP for a
    1,000-frame row of the paper projector, forward + backward."""
    config = get_speechmapper_model_hub().get_arch_config("paper")
    assert 1000 * projector_flops_per_frame(config, 1000) == pytest.approx(
        513e9, rel=0.05
    )


def test_activation_formulas_by_hand() -> None:
    # Korthikanti et al.'s 34h without the score terms is 18h + 4f at f = 4h
    # for GeLU; ReLU + inner dropout keeps one more f-wide mask and copy.
    assert projector_layer_bytes(1024, 4096) == 18 * 1024 + 5 * 4096
    h, k, f = 4096, 1024, 14_336
    assert llama_layer_bytes(h, k, f) == 12 * h + 4 * k + 8 * f == 167_936


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    return build_plan()


def test_single_gpu_8b_row_by_hand(plan: dict[str, Any]) -> None:
    rows = [
        r
        for r in plan["rows"]
        if r["model"].startswith("Llama-3.1-8B")
        and r["num_gpus"] == 1
        and r["activation_checkpointing"] == "off"
    ]
    (row,) = rows
    proj = 279_134_208
    assert row["weights"] == pytest.approx(
        (2 * 8_030_261_248 + 4 * proj) / 1e9, abs=0.01
    )
    assert row["gradients"] == pytest.approx(4 * proj / 1e9, abs=0.01)
    assert row["optimizer"] == pytest.approx(8 * proj / 1e9, abs=0.01)
    parts = row["weights"] + row["gradients"] + row["optimizer"] + row["activations"]
    assert row["total"] == pytest.approx(parts + RESERVE_GB, abs=0.05)
    assert row["fits"] is True  # issue 19's target: the 8B stage 2 on one 80 GB GPU


def test_autocast_copies_and_host_checkpoint_staging_by_hand(
    plan: dict[str, Any],
) -> None:
    """Stage 1 adds autocast's bf16 weight copies to the GPU total; the
    checkpoint's host copy (12 B per trained parameter) is host RAM, on
    rank 0 under DDP and sharded over the ranks under FSDP."""
    proj = 279_134_208

    def row(stage: str, n: int, par: str, model: str = "") -> dict[str, Any]:
        (found,) = [
            r
            for r in plan["rows"]
            if r["stage"] == stage
            and r["gpu"].startswith("H100")
            and r["num_gpus"] == n
            and r["parallelism"] == par
            and r["activation_checkpointing"] == "off"
            and r["model"].startswith(model)
        ]
        return found

    one = row("stage 1", 1, "single")
    assert one["autocast_copies"] == pytest.approx(2 * proj / 1e9, abs=0.01)  # 0.56
    parts = sum(
        one[k]
        for k in ("weights", "gradients", "optimizer", "autocast_copies", "activations")
    )
    assert one["total"] == pytest.approx(parts + RESERVE_GB, abs=0.05)
    assert one["host_staging_rank0"] == pytest.approx(12 * proj / 1e9, abs=0.01)

    ddp = row("stage 1", 4, "DDP")
    assert ddp["host_staging_rank0"] == ddp["host_staging_node"] == 3.35
    fsdp = row("stage 2", 8, "FSDP", "Llama-3.1-8B")
    assert fsdp["autocast_copies"] == 0  # static bf16
    assert fsdp["host_staging_rank0"] == pytest.approx(12 * proj / 8 / 1e9, abs=0.01)
    assert fsdp["host_staging_node"] == 3.35
    # Host RAM is not GPU memory: the stage-2 total has no staging in it.
    gpu = ("weights", "gradients", "optimizer", "activations")
    assert fsdp["total"] == pytest.approx(
        sum(fsdp[k] for k in gpu) + RESERVE_GB, abs=0.05
    )


def test_fsdp_shards_and_checkpointing_shrink_the_rows(plan: dict[str, Any]) -> None:
    def total(n: int, par: str, ac: str) -> float:
        (row,) = [
            r
            for r in plan["rows"]
            if r["model"].startswith("EuroLLM")
            and r["num_gpus"] == n
            and r["parallelism"] == par
            and r["activation_checkpointing"] == ac
        ]
        return float(row["total"])

    assert total(8, "FSDP", "off") < total(4, "FSDP", "off") < total(4, "DDP", "off")
    assert total(1, "single", "layerwise") < total(1, "single", "off")


def test_rehearsal_plans_by_hand() -> None:
    """The rehearsal's CPU plans (stage 1; stage 2 FSDP rank) worked by hand
    for the tiny projector and a small Llama.

    Tiny projector bytes per stored frame: conv 2x64 = 128; block 1 at rate
    1/2: 2 layers x (11x64 + 3x64 + 5x128 + 4x64 = 1,792) = 3,584 -> 1,792,
    projection input 128 -> 64; block 2 at 1/4: conv 128 -> 64, layers 896,
    projection 32; outputs at 1/4: (2 + 12) x 64 = 896 -> 224. Sum 3,200.
    """
    from benchmarks.memory_plan import stage1_rehearsal_plan, stage2_rehearsal_plan

    tiny = get_speechmapper_model_hub().get_arch_config("tiny")
    s1 = stage1_rehearsal_plan(tiny, 1000, 100, frames=50, baseline=5)
    # weights 4x1000 + bf16 table 2x100x64; grads 4,000; AdamW 8,000; 50 x 3,200
    assert (s1.weights, s1.gradients, s1.optimizer) == (16_800, 4_000, 8_000)
    assert s1.activations == 160_000
    # autocast's bf16 copies 2 x 1,000; the checkpoint's host copy 12 x 1,000
    # (fp32 weights + AdamW moments), alive while training goes on
    assert (s1.autocast_copies, s1.checkpoint_staging) == (2_000, 12_000)
    assert s1.total == 5 + 16_800 + 4_000 + 8_000 + 160_000 + 2_000 + 12_000
    # A measured activation figure replaces the analytic one: 50 x 10 B.
    m1 = stage1_rehearsal_plan(
        tiny, 1000, 100, frames=50, baseline=5, bytes_per_frame=10
    )
    assert m1.activations == 500
    assert m1.total == s1.total - 160_000 + 500
    assert (
        dict(m1.arithmetic)["activations"] == "50 frames x 10 B (measured on the CPU)"
    )

    llm = replace(
        get_llama_model_hub().get_arch_config("llama3_2_1b"),
        model_dim=64,
        num_attn_heads=4,
        num_key_value_heads=2,
        ffn_inner_dim=192,
        ffn_inner_dim_multiplier=1.0,
        ffn_inner_dim_multiple_of=32,
        vocab_size=100,
        num_layers=2,
    )
    # Layer: 8x64 + 4x32 + 4x64 + 8x128 = 1,920 B per token (FFN 192x2/3 = 128).
    # 2 rows of 200 frames: (200-6)//2+1 = 98, (98-6)//2+1 = 47 speech tokens
    # each, + 40 template tokens each + 10 response tokens = 184 LLM tokens.
    s2 = stage2_rehearsal_plan(
        tiny,
        1000,
        llm,
        10_000,
        num_ranks=2,
        frames_per_rank=400,
        rows_per_rank=2,
        response_tokens_per_rank=10,
        baseline=5,
    )
    # shard 2x10,000/2 + two gathered bf16 tables 2x(2x100x64) + 4x1000/2
    assert (s2.weights, s2.gradients, s2.optimizer) == (37_600, 2_000, 4_000)
    # 184 x 2 x 1,920 + logits 10 x 100 x (2+4+4) + projector 400 x 3,200
    assert s2.activations == 706_560 + 10_000 + 1_280_000
    assert s2.loading == 2 * 10_000 + 4 * 1000
    # Static bf16 (no autocast copies); each rank stages its shard: 12 x 1,000 / 2.
    assert (s2.autocast_copies, s2.checkpoint_staging) == (0, 6_000)
    assert s2.total == 5 + 37_600 + 2_000 + 4_000 + 1_996_560 + 6_000

    # A large LLM: every rank holds it whole (bf16) before sharding.
    big = stage2_rehearsal_plan(
        tiny,
        1000,
        llm,
        10**8,
        num_ranks=2,
        frames_per_rank=400,
        rows_per_rank=2,
        response_tokens_per_rank=10,
        baseline=5,
    )
    assert big.total == 5 + 2 * 10**8 + 4_000


@pytest.mark.slow
def test_recorded_cpu_activations_and_autocast_copies_are_measured() -> None:
    """The rehearsal's plan uses a recorded CPU measurement of the paper
    projector (output 2048) and 2 B per parameter of autocast copies: both
    reproduced here by ``saved_tensors_hooks`` on a real bf16-autocast forward
    (about 10 s on a CPU)."""
    from benchmarks.memory_plan import (
        AUTOCAST_COPY_BYTES,
        MEASURED_AT_OUTPUT_DIM,
        MEASURED_CPU_PROJECTOR_BYTES_PER_FRAME,
        measure_projector_saved_bytes,
        projector_bytes_per_frame,
    )

    config = replace(
        get_speechmapper_model_hub().get_arch_config("paper"),
        output_dim=MEASURED_AT_OUTPUT_DIM,
    )
    torch.manual_seed(0)
    measured = measure_projector_saved_bytes(config, [64, 128])
    assert measured["bytes_per_frame"] == pytest.approx(
        MEASURED_CPU_PROJECTOR_BYTES_PER_FRAME, rel=0.005
    )
    # The analytic 16-bit estimate is well below what a CPU keeps.
    assert projector_bytes_per_frame(config) < 0.7 * measured["bytes_per_frame"]
    copies = AUTOCAST_COPY_BYTES * projector_parameters(config)
    assert measured["fixed_bytes"] == pytest.approx(copies, rel=0.03)
