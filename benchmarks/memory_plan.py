"""Memory and time plan for the paper's runs, from the real architectures.

Parameter counts come from the models themselves, built on the meta device by
the project's factories from their registered archs (``speechmapper``
``paper``; fairseq2 ``llama`` ``llama3_1_8b``, the shape of Llama-3.1-8B-Instruct;
the plugin's ``eurollm_9b``). Everything else is arithmetic, written out here
and in BENCHMARKS.md ("Memory plan for the paper's runs"):

- weights, gradients, AdamW state: bytes per parameter (fp32 master weights
  under autocast: 4 + 4 + 8; DDP keeps another 4 in its gradient buckets);
- activations: an ANALYTIC ESTIMATE in bytes per token per layer (16-bit
  activations, after Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", Sec. 4.1, rewritten for each
  layer's own FFN and activation function, fused attention kernels, see
  :func:`projector_layer_bytes` and :func:`llama_layer_bytes`). They are not
  measured here; :func:`measure_projector_saved_bytes` measures the
  projector's on the CPU (BENCHMARKS.md, "Dress rehearsal");
- a fixed reserve per GPU for the CUDA context, NCCL buffers and allocator
  fragmentation (:data:`RESERVE_GB`, an assumption);
- stage 1's autocast weight copies on the GPU (:data:`AUTOCAST_COPY_BYTES`);
- HOST RAM for fairseq2's checkpoint staging (:data:`CHECKPOINT_STAGING_BYTES`),
  not GPU memory, per writing rank and per node.

The dress rehearsal runs on a CPU, so :func:`rehearsal_plans` writes the same
arithmetic for its own processes (stage 1; one FSDP rank of stage 2), with the
checkpoint's host copy and autocast's weight copies, stage 1's activations at
the figure MEASURED on the CPU (:data:`MEASURED_CPU_PROJECTOR_BYTES_PER_FRAME`),
plus the measured resident baseline of a process that imported torch and
fairseq2.

    python -m benchmarks.memory_plan     # results/memory_plan.json and .md
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import fairseq2.runtime.dependency
from fairseq2 import init_fairseq2
from fairseq2.models.llama import LLaMAConfig, get_llama_model_hub

from benchmarks.harness import RESULTS
from speechmapper_plugin.models.speechmapper import (
    SpeechMapperConfig,
    get_speechmapper_model_hub,
)

GB: Final = 1e9

RESERVE_GB: Final = 4.0
"""Per GPU: CUDA context (~0.5-1 GB), NCCL buffers, allocator fragmentation."""

FRAME_RATE: Final = 25.0
"""Feature-store frames per second of audio (after 2:1 averaging)."""

# Stage-2 batch composition (assumptions, labelled in the output): the paper
# configs' max_num_frames of 8,000 per GPU filled with 12.8 s utterances
# (320 frames, about LibriSpeech's mean), a 40-token chat template and
# instruction, and a 45-token response (12.8 s x ~2.7 words/s x ~1.3 tokens/word).
UTTERANCE_FRAMES: Final = 320
TEMPLATE_TOKENS: Final = 40
RESPONSE_TOKENS: Final = 45

SMALL_LLM: Final = "Llama-3.2-1B"
"""One GPU only: the size ``bench_gpu`` and the rehearsal measure, to check
this arithmetic against."""

CHECKPOINT_STAGING_BYTES: Final = 12
"""Per trained parameter: fairseq2 0.8.1's ``CheckpointManager`` deep-copies
the model and optimizer state dicts to host memory before writing
(``_copy_state_dict_to_host``; fp32 weights 4 B + AdamW's two moments 8 B) and
writes them from a background thread, so the copy lives while training goes
on. Only replicated-DP rank 0 writes (``_record_model_state``): under DDP the
whole state on rank 0, under FSDP each rank its shard (the rehearsal's stage-2
files: 2 x 541.6 MB model + 2 x 1,083 MB optimizer shards for 270.7M parameters)."""

AUTOCAST_COPY_BYTES: Final = 2
"""Per parameter of the autocast-trained model (stage 1): autocast's cached
16-bit copies of the weights, which the saved tensors keep until backward
(measured on the CPU as the 531.6 MB intercept of
:func:`measure_projector_saved_bytes`, within 2 % of 2 B x 270.7M)."""

MEASURED_CPU_PROJECTOR_BYTES_PER_FRAME: Final = 290_446
"""MEASURED activation bytes per feature frame of the paper projector (output
2048), CPU, bf16 autocast, training mode (dropout 0.1):
:func:`measure_projector_saved_bytes` at 2 x 64 and 2 x 128 frames. The
analytic 16-bit estimate (:func:`projector_bytes_per_frame`) is 171 kB there:
on a CPU autocast keeps the layer norms in fp32, and with dropout SDPA takes
its math path, which keeps the fp32 attention probabilities. The GPU tables
keep the analytic figure, not measured on a GPU: CUDA's fused attention kernels
take dropout (no probabilities kept), but layer norms are on CUDA autocast's
fp32 list too, so part of the CPU excess may remain there; ``make bench-gpu``
is what measures it."""

MEASURED_AT_OUTPUT_DIM: Final = 2048

STAGE1_STEPS: Final = 2_000_000
STAGE1_GLOBAL_FRAMES: Final = 4 * 8_000
STAGE2_STEPS: Final = 1_000


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float
    dtype: str
    peak_tflops: float
    """Dense 16-bit tensor peak (benchmarks.bench_gpu.PEAK_TFLOPS)."""
    assumed_mfu: float
    """For the time plan only: the V100 figure is the paper configs'
    assumption (20 %), the H100 one issue 19's target (40 %); neither measured."""


V100_32GB: Final = Gpu("V100-SXM2-32GB", 32.0, "float16", 125.0, 0.20)
H100_80GB: Final = Gpu("H100-SXM-80GB", 80.0, "bfloat16", 989.0, 0.40)


def projector_layer_bytes(model_dim: int, ffn_dim: int) -> int:
    """Activation bytes per token of one projector encoder layer (pre-LN,
    ReLU FFN, dropout 0.1), 16-bit, fused attention (no score matrix kept):

    - attention, 11h: LN output / QKV input 2h, Q and K 4h, V 2h, attention
      output (output-projection input) 2h, dropout mask h (Korthikanti's 11h);
    - FFN, 3h + 5f: input 2h, ReLU output 2f, inner dropout mask f, dropout
      output (output-projection input) 2f, output dropout mask h;
    - two LayerNorm inputs, 4h.
    """
    h, f = model_dim, ffn_dim
    return 11 * h + (3 * h + 5 * f) + 4 * h


def llama_layer_bytes(model_dim: int, kv_dim: int, ffn_dim: int) -> int:
    """Activation bytes per token of one Llama decoder layer (RMSNorm, GQA,
    SwiGLU, no dropout), 16-bit, fused attention. Counts every input a
    forward keeps for backward, also those of frozen weights (an upper bound:
    the LLM is frozen and only the input gradients are needed):

    - attention, 8h + 4k: norm input 2h, QKV input 2h, Q 2h, K and V 2k each,
      attention output (output-projection input) 2h;
    - SwiGLU, 4h + 8f: norm input 2h, gate/up input 2h, gate output 2f, SiLU
      output 2f, up output 2f, product (down-projection input) 2f.
    """
    h, k, f = model_dim, kv_dim, ffn_dim
    return (8 * h + 4 * k) + (4 * h + 8 * f)


def count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def projector_parameters(config: SpeechMapperConfig) -> int:
    model = get_speechmapper_model_hub().create_new_model(config, meta=True)
    return count(model)


def llama_parameters(config: LLaMAConfig) -> int:
    return count(get_llama_model_hub().create_new_model(config, meta=True))


def llama_ffn_dim(config: LLaMAConfig) -> int:
    """fairseq2's SwiGLU width: ``ffn_inner_dim * multiplier * 2/3`` rounded up."""
    dim = int(config.ffn_inner_dim * config.ffn_inner_dim_multiplier * 2 / 3)
    step = config.ffn_inner_dim_multiple_of
    return step * ((dim + step - 1) // step)


def projector_bytes_per_frame(config: SpeechMapperConfig) -> float:
    """Activation bytes per feature-store frame: every block's layers at its
    own rate (each conv halves it), the conv and projection inputs, and the
    fp32 loss terms on the outputs (outputs, difference, square: 12 B x D)."""
    rate = 1.0
    total = 0.0
    in_dim = config.input_dim
    for block in config.blocks:
        total += rate * 2 * in_dim  # conv input
        rate /= block.conv_stride
        total += (
            rate
            * block.num_layers
            * projector_layer_bytes(block.model_dim, block.ffn_inner_dim)
        )
        total += rate * 2 * block.model_dim  # block projection input
        in_dim = block.output_dim
    total += rate * (2 * in_dim + 12 * config.output_dim)
    return total


def projector_flops_per_frame(config: SpeechMapperConfig, seq_frames: int) -> float:
    """Forward + backward FLOPs per frame for utterances of ``seq_frames``:
    2 x weights touched per frame + attention 4 x seq x h per token per layer
    forward; backward twice that, except the first convolution's, whose
    input (the features) needs no gradient: once. Conv edges are ignored."""
    rate = 1.0
    fwd = 0.0
    first_conv = 0.0
    in_dim = config.input_dim
    seq = float(seq_frames)
    for i, block in enumerate(config.blocks):
        rate /= block.conv_stride
        seq /= block.conv_stride
        h, f = block.model_dim, block.ffn_inner_dim
        conv = rate * 2 * in_dim * h * block.conv_kernel_size
        if i == 0:
            first_conv = conv
        layer = 4 * h * h + 2 * h * f
        fwd += conv + rate * 2 * (block.num_layers * layer + h * block.output_dim)
        fwd += rate * block.num_layers * 4 * seq * h
        in_dim = block.output_dim
    fwd += rate * 2 * in_dim * config.output_dim
    return 3 * fwd - first_conv


@dataclass(frozen=True)
class Row:
    """One configuration's bytes per GPU (GB) and whether it fits."""

    stage: str
    model: str
    gpu: str
    num_gpus: int
    parallelism: str
    activation_checkpointing: str
    batch: str
    weights: float
    gradients: float
    optimizer: float
    activations: float
    reserve: float
    total: float
    capacity: float
    fits: bool
    max_batch_that_fits: str
    hours: float | None
    autocast_copies: float = 0.0
    """GPU, in ``total``: stage 1's 16-bit weight copies."""
    host_staging_rank0: float = 0.0
    """HOST RAM, not in ``total``: checkpoint staging on the writing rank."""
    host_staging_node: float = 0.0
    """HOST RAM of the node (all its ranks; every table row is one node)."""
    notes: str = ""


def _gb(x: float) -> float:
    return round(x / GB, 2)


def _row(
    *,
    weights: float,
    grads: float,
    optim: float,
    acts: float,
    capacity_gb: float,
    autocast: float = 0.0,
    staging_rank0: float = 0.0,
    staging_node: float = 0.0,
    **described: Any,
) -> Row:
    """A row from its byte counts: GPU totals with the reserve, in GB, the
    fit, and the host RAM the checkpoint staging takes (not in the total)."""
    total = weights + grads + optim + acts + autocast + RESERVE_GB * GB
    return Row(
        weights=_gb(weights),
        gradients=_gb(grads),
        optimizer=_gb(optim),
        activations=_gb(acts),
        autocast_copies=_gb(autocast),
        host_staging_rank0=_gb(staging_rank0),
        host_staging_node=_gb(staging_node),
        reserve=RESERVE_GB,
        total=_gb(total),
        capacity=capacity_gb,
        fits=total <= capacity_gb * GB,
        **described,
    )


def stage1_rows(config: SpeechMapperConfig, params: int, vocab: int) -> list[Row]:
    """Stage 1: the projector alone (the LLM's embedding table as targets)."""
    per_frame = projector_bytes_per_frame(config)
    flops = projector_flops_per_frame(config, UTTERANCE_FRAMES)
    table = 2 * vocab * config.output_dim
    rows = []
    for gpu, n, frames in (
        (V100_32GB, 4, 8_000),
        (H100_80GB, 1, 32_000),
        (H100_80GB, 4, 8_000),
    ):
        weights = 4 * params + table
        grads = 4 * params + (4 * params if n > 1 else 0)
        optim = 8 * params
        autocast = AUTOCAST_COPY_BYTES * params
        fixed = weights + grads + optim + autocast + RESERVE_GB * GB
        acts = frames * per_frame
        capacity = gpu.memory_gb * GB
        staging = CHECKPOINT_STAGING_BYTES * params  # rank 0 writes it all
        seconds = (
            STAGE1_STEPS
            * STAGE1_GLOBAL_FRAMES
            * flops
            / (n * gpu.peak_tflops * 1e12 * gpu.assumed_mfu)
        )
        rows.append(
            _row(
                weights=weights,
                grads=grads,
                optim=optim,
                acts=acts,
                capacity_gb=gpu.memory_gb,
                autocast=autocast,
                staging_rank0=staging,
                staging_node=staging,
                stage="stage 1",
                model=f"projector paper ({params / 1e6:.1f}M)",
                gpu=f"{gpu.name} {gpu.dtype}",
                num_gpus=n,
                parallelism="DDP" if n > 1 else "single",
                activation_checkpointing="off",
                batch=f"{frames} frames/GPU (global {n * frames})",
                max_batch_that_fits=f"{int((capacity - fixed) / per_frame):,} frames",
                hours=round(seconds / 3600, 1),
                notes=(
                    f"weights include the target table ({_gb(table)} GB, bf16); "
                    f"time at {gpu.assumed_mfu:.0%} MFU (assumed), "
                    f"{flops / 1e9:.3f} GFLOP/frame"
                ),
            )
        )
    return rows


@dataclass(frozen=True)
class Stage2Batch:
    rows: int
    speech_tokens: int
    llm_tokens: int
    response_tokens: int


def stage2_batch(config: SpeechMapperConfig, max_num_frames: int) -> Stage2Batch:
    rows = max_num_frames // UTTERANCE_FRAMES
    speech = rows * int(config.averaged_output_length(UTTERANCE_FRAMES))
    return Stage2Batch(
        rows=rows,
        speech_tokens=speech,
        llm_tokens=speech + rows * (TEMPLATE_TOKENS + RESPONSE_TOKENS),
        response_tokens=rows * RESPONSE_TOKENS,
    )


def stage2_rows(
    proj_config: SpeechMapperConfig,
    proj_params: int,
    name: str,
    llm: LLaMAConfig,
    llm_params: int,
    gpu_counts: tuple[int, ...] = (1, 4, 8),
) -> list[Row]:
    """Stage 2: frozen bf16 LLM + trained projector, 8,000 frames per GPU."""
    layer = llama_layer_bytes(
        llm.model_dim,
        llm.model_dim // llm.num_attn_heads * llm.num_key_value_heads,
        llama_ffn_dim(llm),
    )
    batch = stage2_batch(proj_config, 8_000)
    # Logits of the response positions only (the recipe projects no others):
    # bf16 logits, their fp32 copy and its softmax for the CE backward.
    logits = batch.response_tokens * llm.vocab_size * (2 + 4 + 4)
    proj_acts = 8_000 * projector_bytes_per_frame(proj_config)
    embed = 2 * llm.vocab_size * llm.model_dim  # the largest FSDP unit
    capacity = H100_80GB.memory_gb * GB
    # FLOPs per step: projector 8,000 frames; LLM forward 2 x non-embedding
    # weights per token, backward to the inputs only (another 2x), plus the
    # vocabulary projection at the response positions (x3: its input grads).
    tables = 1 if llm.tied_embeddings else 2
    llm_body = llm_params - tables * llm.vocab_size * llm.model_dim
    step_flops = (
        8_000 * projector_flops_per_frame(proj_config, UTTERANCE_FRAMES)
        + 4 * llm_body * batch.llm_tokens
        + 3 * 2 * llm.vocab_size * llm.model_dim * batch.response_tokens
    )
    rows = []
    for n in gpu_counts:
        for parallelism in ("DDP", "FSDP") if n > 1 else ("single",):
            for ac in ("off", "layerwise"):
                if parallelism == "FSDP":
                    # Each rank: its shard plus the gathered unit in use and the
                    # next one prefetched.
                    weights = 2 * llm_params / n + 2 * embed + 4 * proj_params / n
                    grads = 4 * proj_params / n
                    optim = 8 * proj_params / n
                    # Every rank writes its shard (the node holds them all).
                    staging_rank0 = CHECKPOINT_STAGING_BYTES * proj_params / n
                else:
                    weights = 2 * llm_params + 4 * proj_params
                    grads = 4 * proj_params * (2 if n > 1 else 1)
                    optim = 8 * proj_params
                    staging_rank0 = CHECKPOINT_STAGING_BYTES * proj_params
                if ac == "off":
                    per_token = llm.num_layers * layer
                    acts_llm = batch.llm_tokens * per_token
                else:
                    # Only each layer's input is kept; one layer is rebuilt at a time.
                    per_token = llm.num_layers * 2 * llm.model_dim
                    acts_llm = batch.llm_tokens * (per_token + layer)
                acts = acts_llm + logits + proj_acts
                fixed = weights + grads + optim + RESERVE_GB * GB
                per_row = (acts_llm + logits) / batch.rows + proj_acts / batch.rows
                max_rows = int((capacity - fixed) / per_row)
                seconds = (
                    STAGE2_STEPS
                    * step_flops
                    / (H100_80GB.peak_tflops * 1e12 * H100_80GB.assumed_mfu)
                )
                rows.append(
                    _row(
                        weights=weights,
                        grads=grads,
                        optim=optim,
                        acts=acts,
                        capacity_gb=H100_80GB.memory_gb,
                        staging_rank0=staging_rank0,
                        staging_node=CHECKPOINT_STAGING_BYTES * proj_params,
                        stage="stage 2",
                        model=f"{name} ({llm_params / 1e9:.2f}B, bf16, frozen)",
                        gpu=f"{H100_80GB.name} bf16",
                        num_gpus=n,
                        parallelism=parallelism,
                        activation_checkpointing=ac,
                        batch=(
                            f"8000 frames/GPU: {batch.rows} rows, "
                            f"{batch.llm_tokens} LLM tokens"
                        ),
                        max_batch_that_fits=(
                            f"{max_rows} rows = {max_rows * UTTERANCE_FRAMES:,} frames"
                        ),
                        hours=round(seconds / 3600, 2),
                        notes=(
                            "LLM layer checkpointing is not wired in this project "
                            "(fairseq2's trainer.activation_checkpointing wraps the "
                            "trained projector only): what it would save"
                            if ac == "layerwise"
                            else ""
                        ),
                    )
                )
    return rows


# -- the dress rehearsal's own configurations (CPU, peak RSS) -------------------


@dataclass(frozen=True)
class RehearsalPlan:
    """Planned peak resident bytes of one rehearsal training process: the
    plan's terms for the batch the step actually ran, plus the resident
    baseline of a process that has imported torch + fairseq2 (MEASURED by
    :func:`measure_import_baseline`, not planned). ``arithmetic`` names each
    term with how it was computed (written next to the numbers)."""

    step: str
    baseline: float
    weights: float
    gradients: float
    optimizer: float
    activations: float
    loading: float = 0.0
    """Bytes held while the model is assembled, before training starts (stage 2
    under FSDP: the whole bf16 LLM on every rank before it is sharded)."""
    autocast_copies: float = 0.0
    checkpoint_staging: float = 0.0
    """fairseq2's host copy of the checkpointed state; the write runs in a
    background thread, so it adds to what training holds."""
    arithmetic: tuple[tuple[str, str], ...] = ()

    @property
    def training(self) -> float:
        return (
            self.weights
            + self.autocast_copies
            + self.gradients
            + self.optimizer
            + self.activations
            + self.checkpoint_staging
        )

    @property
    def total(self) -> float:
        """Peak RSS is a maximum over the process's life: the larger phase."""
        return self.baseline + max(self.training, self.loading)


def stage1_rehearsal_plan(
    config: SpeechMapperConfig,
    params: int,
    vocab: int,
    frames: float,
    baseline: float,
    *,
    bytes_per_frame: float | None = None,
) -> RehearsalPlan:
    """Stage 1 in one process, as :func:`stage1_rows` counts a single GPU:
    fp32 weights, gradients and AdamW state, the bf16 target table, autocast's
    bf16 weight copies, the checkpoint's host copy, and ``frames`` (the step's
    measured batch) of activations at ``bytes_per_frame`` (default: the
    analytic estimate)."""
    if bytes_per_frame is None:
        per_frame, basis = projector_bytes_per_frame(config), "analytic estimate"
    else:
        per_frame, basis = bytes_per_frame, "measured on the CPU"
    table = 2 * vocab * config.output_dim
    return RehearsalPlan(
        step="stage1",
        baseline=baseline,
        weights=4 * params + table,
        gradients=4 * params,
        optimizer=8 * params,
        activations=frames * per_frame,
        autocast_copies=AUTOCAST_COPY_BYTES * params,
        checkpoint_staging=CHECKPOINT_STAGING_BYTES * params,
        arithmetic=(
            (
                "weights",
                f"4 B x {params:,} + bf16 table 2 B x {vocab:,} x {config.output_dim}",
            ),
            ("gradients", f"4 B x {params:,}"),
            ("optimizer", f"AdamW 8 B x {params:,}"),
            ("autocast_copies", f"{AUTOCAST_COPY_BYTES} B x {params:,}"),
            ("activations", f"{frames:,.0f} frames x {per_frame:,.0f} B ({basis})"),
            (
                "checkpoint_staging",
                f"host copy {CHECKPOINT_STAGING_BYTES} B x {params:,}",
            ),
            ("baseline", "measured: fresh process after import + init_fairseq2()"),
        ),
    )


def stage2_rehearsal_plan(
    proj_config: SpeechMapperConfig,
    proj_params: int,
    llm: LLaMAConfig,
    llm_params: int,
    *,
    num_ranks: int,
    frames_per_rank: float,
    rows_per_rank: float,
    response_tokens_per_rank: float,
    baseline: float,
) -> RehearsalPlan:
    """Stage 2 under FSDP, one rank, as :func:`stage2_rows` counts an FSDP
    GPU (shard + two gathered units, no activation checkpointing) for the
    measured batch: ``rows_per_rank`` utterances sharing ``frames_per_rank``,
    each with the chat template, and the measured response tokens."""
    layer = llama_layer_bytes(
        llm.model_dim,
        llm.model_dim // llm.num_attn_heads * llm.num_key_value_heads,
        llama_ffn_dim(llm),
    )
    speech = rows_per_rank * proj_config.averaged_output_length(
        int(frames_per_rank / max(rows_per_rank, 1.0))
    )
    llm_tokens = speech + rows_per_rank * TEMPLATE_TOKENS + response_tokens_per_rank
    logits = response_tokens_per_rank * llm.vocab_size * (2 + 4 + 4)
    embed = 2 * llm.vocab_size * llm.model_dim
    n = num_ranks
    per_frame = projector_bytes_per_frame(proj_config)
    return RehearsalPlan(
        step="stage2",
        baseline=baseline,
        weights=2 * llm_params / n + 2 * embed + 4 * proj_params / n,
        gradients=4 * proj_params / n,
        optimizer=8 * proj_params / n,
        activations=llm_tokens * llm.num_layers * layer
        + logits
        + frames_per_rank * per_frame,
        loading=2 * llm_params + 4 * proj_params,
        checkpoint_staging=CHECKPOINT_STAGING_BYTES * proj_params / n,
        arithmetic=(
            (
                "weights",
                f"LLM shard 2 B x {llm_params:,} / {n} + two gathered bf16 tables "
                f"2 x 2 B x {llm.vocab_size:,} x {llm.model_dim} "
                f"+ projector 4 B x {proj_params:,} / {n}",
            ),
            ("gradients", f"4 B x {proj_params:,} / {n}"),
            ("optimizer", f"AdamW 8 B x {proj_params:,} / {n}"),
            (
                "activations",
                f"{llm_tokens:,.0f} LLM tokens x {llm.num_layers} layers x {layer:,} B "
                f"+ logits {response_tokens_per_rank:,.0f} x {llm.vocab_size:,} x 10 B "
                f"+ {frames_per_rank:,.0f} frames x {per_frame:,.0f} B "
                "(analytic: static bf16, no autocast)",
            ),
            (
                "checkpoint_staging",
                f"host copy of this rank's shard {CHECKPOINT_STAGING_BYTES} B "
                f"x {proj_params:,} / {n}",
            ),
            ("loading", f"whole bf16 LLM 2 B x {llm_params:,} + 4 B x {proj_params:,}"),
            ("baseline", "measured: fresh process after import + init_fairseq2()"),
        ),
    )


def measure_import_baseline() -> float:
    """Peak RSS (bytes) of a fresh interpreter that imported torch and
    fairseq2 and ran ``init_fairseq2()``: what every recipe process holds
    before it builds anything (measured, not planned)."""
    import subprocess
    import sys

    code = (
        "import resource, torch, fairseq2\n"
        "from fairseq2 import init_fairseq2\n"
        "init_fairseq2()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


def measure_projector_saved_bytes(
    config: SpeechMapperConfig, frames: Sequence[int], *, rows: int = 2
) -> dict[str, float]:
    """Bytes autograd keeps for backward in one bf16-autocast forward of
    ``config``'s projector (CPU, training mode), measured with
    ``saved_tensors_hooks`` (distinct storages, parameters excluded), at
    ``rows`` utterances of each of ``frames`` lengths: the slope is the
    activation bytes per frame, the intercept what does not grow with the
    batch (autocast's bf16 copies of the weights)."""
    import torch
    from fairseq2.nn import BatchLayout

    model = get_speechmapper_model_hub().create_new_model(
        config, device=torch.device("cpu")
    )
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    points = []
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    for n in frames:
        saved.clear()

        x = torch.randn(rows, n, config.input_dim)
        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            torch.autocast("cpu", dtype=torch.bfloat16),
        ):
            y, _ = model(x, BatchLayout.of(x, [n] * rows), pre_averaged=True)
        del y
        points.append((rows * n, float(sum(saved.values()))))
    (f0, b0), (f1, b1) = points[0], points[-1]
    slope = (b1 - b0) / (f1 - f0)
    return {"bytes_per_frame": slope, "fixed_bytes": b0 - slope * f0}


def rehearsal_plans(
    llm_arch: str,
    output_dim: int,
    *,
    stage1_frames: float,
    stage2: dict[str, float] | None,
    num_ranks: int,
    baseline: float,
    tied: bool = False,
) -> dict[str, RehearsalPlan]:
    """The plans for the rehearsal's stage-1 and stage-2 steps, from the real
    architectures (paper projector with ``output_dim``, fairseq2's
    ``llm_arch``) and the batches the steps measured (``stage2``: per-rank
    ``frames``, ``rows``, ``response_tokens``; ``None`` leaves it out).
    ``tied``: the rehearsal's stand-in is untied, like the 8B models."""
    llm = replace(get_llama_model_hub().get_arch_config(llm_arch), tied_embeddings=tied)
    proj = replace(
        get_speechmapper_model_hub().get_arch_config("paper"), output_dim=output_dim
    )
    proj_params = projector_parameters(proj)
    # Stage 1 runs under CPU autocast: the activations measured there, when
    # the projector is the one they were measured for.
    measured = MEASURED_CPU_PROJECTOR_BYTES_PER_FRAME
    plans = {
        "stage1": stage1_rehearsal_plan(
            proj,
            proj_params,
            llm.vocab_size,
            stage1_frames,
            baseline,
            bytes_per_frame=measured if output_dim == MEASURED_AT_OUTPUT_DIM else None,
        )
    }
    if stage2 is not None:
        plans["stage2"] = stage2_rehearsal_plan(
            proj,
            proj_params,
            llm,
            llama_parameters(llm),
            num_ranks=num_ranks,
            frames_per_rank=stage2["frames"],
            rows_per_rank=stage2["rows"],
            response_tokens_per_rank=stage2["response_tokens"],
            baseline=baseline,
        )
    return plans


def build_plan() -> dict[str, Any]:
    proj_config = get_speechmapper_model_hub().get_arch_config("paper")
    proj_params = projector_parameters(proj_config)
    hub = get_llama_model_hub()
    llms = {
        "Llama-3.1-8B-Instruct": hub.get_arch_config("llama3_1_8b"),
        "EuroLLM-9B-Instruct": hub.get_arch_config("eurollm_9b"),
        SMALL_LLM: hub.get_arch_config("llama3_2_1b"),
    }
    llm_params = {name: llama_parameters(c) for name, c in llms.items()}
    rows = stage1_rows(
        proj_config, proj_params, llms["Llama-3.1-8B-Instruct"].vocab_size
    )
    for name, config in llms.items():
        fitted = replace(proj_config, output_dim=config.model_dim)
        rows += stage2_rows(
            fitted,
            projector_parameters(fitted),
            name,
            config,
            llm_params[name],
            (1,) if name == SMALL_LLM else (1, 4, 8),
        )
    per_layer = {
        f"projector block {i + 1} ({b.model_dim}-d, FFN {b.ffn_inner_dim})": (
            projector_layer_bytes(b.model_dim, b.ffn_inner_dim)
        )
        for i, b in enumerate(proj_config.blocks)
    }
    for name, c in llms.items():
        per_layer[f"{name} layer"] = llama_layer_bytes(
            c.model_dim,
            c.model_dim // c.num_attn_heads * c.num_key_value_heads,
            llama_ffn_dim(c),
        )
    staging = CHECKPOINT_STAGING_BYTES * proj_params
    terms = {
        "autocast weight copies (GPU, stage 1)": (
            f"{AUTOCAST_COPY_BYTES} B x {proj_params:,} = "
            f"{_gb(AUTOCAST_COPY_BYTES * proj_params)} GB per GPU"
        ),
        "checkpoint staging (HOST RAM, single GPU / DDP: rank 0)": (
            f"{CHECKPOINT_STAGING_BYTES} B x {proj_params:,} = {_gb(staging)} GB "
            "on rank 0, none on the others"
        ),
        "checkpoint staging (HOST RAM, FSDP on N GPUs: every rank)": (
            f"{CHECKPOINT_STAGING_BYTES} B x {proj_params:,} / N = "
            f"{_gb(staging / 4)} GB at N = 4, {_gb(staging / 8)} GB at N = 8; "
            f"{_gb(staging)} GB per node when the node holds every rank"
        ),
        "projector activations per frame": (
            f"analytic (16-bit, fused attention) {projector_bytes_per_frame(proj_config):,.0f} B "
            "for the GPU rows; measured on the CPU under bf16 autocast "
            f"{MEASURED_CPU_PROJECTOR_BYTES_PER_FRAME:,} B at output {MEASURED_AT_OUTPUT_DIM} "
            "(the rehearsal's plan)"
        ),
    }
    return {
        "terms": terms,
        "parameters": {
            "projector paper (output 4096)": proj_params,
            **llm_params,
        },
        "activation_bytes_per_token_per_layer (analytic estimate)": per_layer,
        "projector_activation_bytes_per_frame (analytic estimate)": round(
            projector_bytes_per_frame(proj_config)
        ),
        "projector_flops_per_frame (analytic, 320-frame utterances)": round(
            projector_flops_per_frame(proj_config, UTTERANCE_FRAMES)
        ),
        "assumptions": {
            "reserve_gb_per_gpu": RESERVE_GB,
            "stage2_utterance_frames": UTTERANCE_FRAMES,
            "stage2_template_tokens": TEMPLATE_TOKENS,
            "stage2_response_tokens": RESPONSE_TOKENS,
            "stage1_steps": STAGE1_STEPS,
            "stage1_global_frames": STAGE1_GLOBAL_FRAMES,
            "stage2_steps": STAGE2_STEPS,
            "gpus": [asdict(V100_32GB), asdict(H100_80GB)],
            "activations": "analytic estimate, 16-bit, fused attention; not measured",
        },
        "rows": [asdict(r) for r in rows],
    }


def markdown(plan: dict[str, Any]) -> str:
    head = (
        "| stage | model | GPUs | parallelism | LLM act. ckpt | batch | weights | grads "
        "| AdamW | autocast copies | activations | total GB | fits "
        "| largest batch that fits | hours | host RAM ckpt staging GB (rank 0 / node) |\n"
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|\n"
    )
    lines = [
        f"| {r['stage']} | {r['model']} | {r['num_gpus']}× {r['gpu']} | "
        f"{r['parallelism']} | {r['activation_checkpointing']} | {r['batch']} | "
        f"{r['weights']} | {r['gradients']} | {r['optimizer']} | "
        f"{r['autocast_copies']} | {r['activations']} | "
        f"{r['total']} / {r['capacity']:g} | {'yes' if r['fits'] else 'NO'} | "
        f"{r['max_batch_that_fits']} | {r['hours']} | "
        f"{r['host_staging_rank0']} / {r['host_staging_node']} |"
        for r in plan["rows"]
    ]
    terms = [f"- {name}: {text}" for name, text in plan.get("terms", {}).items()]
    return head + "\n".join(lines) + "\n\n" + "\n".join(terms) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "memory_plan.json")
    args = parser.parse_args(argv)
    if fairseq2.runtime.dependency._resolver is None:  # not yet (tests have)
        init_fairseq2()
    plan = build_plan()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(plan, indent=2) + "\n")
    table = markdown(plan)
    args.output.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")
    return plan


if __name__ == "__main__":
    main()
