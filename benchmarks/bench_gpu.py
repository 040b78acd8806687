"""GPU figures for the paper's runs: what a user's first real run will cost.

On a CUDA device, at the paper's shapes (random weights, every model built by
the project's own factories from its registered archs):

1. stage 1: training steps of the ``paper`` projector (279M) at the paper
   configs' batch (``max_num_frames`` 8,000 per GPU, bf16 autocast, or fp16 on
   a card without bf16): frames/s, and model FLOPs utilisation (MFU) = the
   step's FLOPs (counted by ``torch.utils.flop_counter.FlopCounterMode`` on a
   real forward + backward, not estimated; it counts CUDA's fused attention
   kernels, not the CPU's) / step time / the card's dense 16-bit tensor peak
   (:data:`PEAK_TFLOPS`); target >= 40 % bf16 on an H100;
2. the SeamlessM4T-v2 ``large`` speech encoder (580.5M): real-time factor of
   the whole extraction (``SpeechFeatureExtractor``: fbank, 24 Conformer
   blocks, LayerNorm, 2:1 averaging) = compute seconds / audio seconds;
3. a stage-2 step: projector -> speech spliced into chat prompts -> frozen
   random bf16 Llama (``llama3_2_1b`` and ``llama3_1_8b`` archs) -> response
   cross-entropy (``losses.stage2.response_cross_entropy``, what stage 2 runs
   for its CE term) -> backward into the projector -> AdamW: seconds per step
   and peak GPU memory; target: the 8B step fits one 80 GB GPU;
4. batched greedy generation (``speechmapper_plugin.generation``) from random
   speech prompts with the 1B-shaped Llama: new tokens/s.

``--tiny`` (automatic without CUDA) runs every part at tiny shapes in float32
on the CPU: the test suite does, so the script cannot rot. Its figures say
nothing about a GPU. Memory on CPU is the process's peak RSS, labelled so.

    python -m benchmarks.bench_gpu            # CUDA: benchmarks/results/gpu_<card>.json
    python -m benchmarks.bench_gpu --tiny     # CPU: benchmarks/results/gpu_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fairseq2.runtime.dependency
import torch
from fairseq2 import init_fairseq2
from fairseq2.models.llama import LLaMAConfig, get_llama_model_hub
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.harness import (
    RESULTS,
    environment,
    peak_rss_bytes,
    reset_peak_rss,
    summarize,
    write_result,
)
from speechmapper_plugin.models.speechmapper import (
    SpeechMapperProjector,
    get_speechmapper_model_hub,
)

PEAK_TFLOPS: dict[str, tuple[float, str]] = {
    # Dense (no sparsity) 16-bit tensor-core peaks from the vendors' data sheets.
    "H200": (
        989.0,
        "NVIDIA H200 datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity",
    ),
    "H100 SXM": (989.0, "NVIDIA H100 datasheet (SXM): BF16 1,979 TFLOPS with sparsity"),
    "H100 PCIe": (
        756.0,
        "NVIDIA H100 datasheet (PCIe): BF16 1,513 TFLOPS with sparsity",
    ),
    "H100": (989.0, "NVIDIA H100 datasheet (SXM): BF16 1,979 TFLOPS with sparsity"),
    "A100": (312.0, "NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS dense"),
    "V100": (
        125.0,
        "NVIDIA V100 datasheet (SXM2): FP16 Tensor Core 125 TFLOPS; no bf16",
    ),
}
"""Dense 16-bit peak TFLOPS by card name (matched in this order, so the most
specific name first). The data sheets quote H100/H200 with 2:4 sparsity; the
dense figure is half."""

TARGET_STAGE1_MFU = 0.40
TARGET_STAGE2_8B_MEMORY_GB = 80.0


def peak_tflops(device_name: str) -> tuple[float, str] | None:
    """The card's dense 16-bit peak and its source, or ``None`` if unknown."""
    for name, peak in PEAK_TFLOPS.items():
        if all(part in device_name for part in name.split()):
            return peak
    return None


@dataclass(frozen=True)
class Shapes:
    """What each part runs at: the paper's shapes, or tiny ones for the CPU."""

    projector_arch: str
    encoder_arch: str
    llm_archs: tuple[str, ...]
    stage1_rows: int
    stage1_frames: int
    encoder_waveforms: int
    encoder_seconds: float
    stage2_rows: int
    stage2_frames: int
    prompt_tokens: int
    response_tokens: int
    gen_rows: int
    gen_prompt_len: int
    gen_new_tokens: int
    steps: int
    warmup: int


PAPER = Shapes(
    projector_arch="paper",
    encoder_arch="large",
    llm_archs=("llama3_2_1b", "llama3_1_8b"),
    # 8,000 frames per GPU (the paper configs' max_num_frames): 25 rows of
    # 320 frames (12.8 s, about LibriSpeech's mean utterance).
    stage1_rows=25,
    stage1_frames=320,
    encoder_waveforms=8,
    encoder_seconds=20.0,
    stage2_rows=25,
    stage2_frames=320,
    prompt_tokens=40,
    response_tokens=45,
    gen_rows=16,
    gen_prompt_len=120,
    gen_new_tokens=64,
    steps=10,
    warmup=3,
)

TINY = Shapes(
    projector_arch="tiny",
    encoder_arch="tiny",
    llm_archs=("tiny_1b_shape", "tiny_8b_shape"),
    stage1_rows=4,
    stage1_frames=80,
    encoder_waveforms=2,
    encoder_seconds=1.0,
    stage2_rows=2,
    stage2_frames=80,
    prompt_tokens=6,
    response_tokens=5,
    gen_rows=3,
    gen_prompt_len=12,
    gen_new_tokens=4,
    steps=2,
    warmup=1,
)


def tiny_llama(depth: int) -> LLaMAConfig:
    """A 64-d random Llama standing in for the 1B (2 layers) or 8B (4 layers) one."""
    return LLaMAConfig(
        model_dim=64,
        max_seq_len=512,
        vocab_size=256,
        pad_idx=0,
        num_layers=depth,
        num_attn_heads=4,
        num_key_value_heads=2,
        ffn_inner_dim=256,
        ffn_inner_dim_multiple_of=64,
    )


class Device:
    """Synchronisation, autocast and peak memory on CUDA or the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.name = torch.cuda.get_device_name(device)
            bf16 = torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float16
        else:
            self.name = "cpu"
            self.dtype = torch.float32

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def autocast(self) -> Any:
        return torch.autocast(
            self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32
        )

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()

    def peak_memory(self) -> dict[str, Any]:
        if self.cuda:
            return {
                "what": "torch.cuda.max_memory_allocated",
                "gb": round(torch.cuda.max_memory_allocated(self.device) / 1e9, 3),
                "reserved_gb": round(
                    torch.cuda.max_memory_reserved(self.device) / 1e9, 3
                ),
            }
        return {
            "what": "process peak RSS (CPU)",
            "gb": round(peak_rss_bytes() / 1e9, 3),
        }


def time_steps(step: Callable[[], Any], dev: Device, shapes: Shapes) -> list[float]:
    """Seconds of each of ``shapes.steps`` calls after ``shapes.warmup`` untimed ones."""
    for _ in range(shapes.warmup):
        step()
    seconds = []
    for _ in range(shapes.steps):
        dev.sync()
        start = time.perf_counter()
        step()
        dev.sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def count_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def random_features(
    rows: int, frames: int, dim: int, dev: Device
) -> tuple[Tensor, BatchLayout]:
    """Pre-averaged 25 Hz features, lengths spread over the last quarter."""
    generator = torch.Generator().manual_seed(0)
    lens = [frames - (i * frames // (4 * rows)) for i in range(rows)]
    features = torch.randn(rows, frames, dim, generator=generator).to(dev.device)
    for row, n in enumerate(lens):
        features[row, n:] = 0.0
    return features, BatchLayout.of(features, lens)


def build_projector(
    arch: str, output_dim: int | None, dev: Device
) -> SpeechMapperProjector:
    hub = get_speechmapper_model_hub()
    config = hub.get_arch_config(arch)
    if output_dim is not None:
        config = replace(config, output_dim=output_dim)
    torch.manual_seed(0)
    return hub.create_new_model(config, device=dev.device, dtype=torch.float32).train()


def stage1(shapes: Shapes, dev: Device) -> dict[str, Any]:
    from speechmapper_plugin.losses import embedding_mse_loss

    dev.reset_peak()
    model = build_projector(shapes.projector_arch, None, dev)
    config = model.config
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01
    )
    features, layout = random_features(
        shapes.stage1_rows, shapes.stage1_frames, config.input_dim, dev
    )
    out_lens = [config.averaged_output_length(n) for n in layout.seq_lens]
    # Targets: transcript-length prefixes of random "token embeddings".
    target_lens = torch.tensor([max(1, n // 2) for n in out_lens], device=dev.device)
    targets = torch.randn(
        shapes.stage1_rows, max(out_lens), config.output_dim, device=dev.device
    )
    pad = torch.zeros(config.output_dim, device=dev.device)

    def forward_backward() -> Tensor:
        with dev.autocast():
            outputs, out_layout = model(features, layout, pre_averaged=True)
            loss = embedding_mse_loss(
                outputs.float(), out_layout.seq_lens_pt, targets, target_lens, pad
            ).total
        loss.backward()
        return loss

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    flops = count_flops(forward_backward)
    seconds = time_steps(step, dev, shapes)
    loss = float(step().detach())
    frames = sum(layout.seq_lens)
    median = summarize(seconds)["median"]
    result: dict[str, Any] = {
        "arch": shapes.projector_arch,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "batch": {
            "rows": shapes.stage1_rows,
            "frames": frames,
            "padded_frames": shapes.stage1_rows * shapes.stage1_frames,
        },
        "autocast_dtype": str(dev.dtype).removeprefix("torch."),
        "step_seconds": summarize(seconds),
        "frames_per_second": round(frames / median, 1),
        "flops_per_step": flops,
        "flops_per_frame": round(flops / frames),
        "achieved_tflops": round(flops / median / 1e12, 4),
        "loss_finite": math.isfinite(loss),
        "peak_memory": dev.peak_memory(),
    }
    peak = peak_tflops(dev.name) if dev.cuda else None
    if peak is not None:
        result["mfu"] = round(flops / median / (peak[0] * 1e12), 4)
        result["peak_tflops"] = {"value": peak[0], "source": peak[1]}
        result["target_mfu"] = TARGET_STAGE1_MFU
    else:
        result["mfu"] = None
        result["mfu_note"] = f"no 16-bit peak known for {dev.name!r}"
    return result


def encoder_rtf(shapes: Shapes, dev: Device) -> dict[str, Any]:
    from speechmapper_plugin.models.sm4t_speech_encoder import SpeechFeatureExtractor
    from speechmapper_plugin.models.sm4t_speech_encoder.hub import (
        get_sm4t_speech_encoder_hub,
    )

    dev.reset_peak()
    hub = get_sm4t_speech_encoder_hub()
    config = hub.get_arch_config(shapes.encoder_arch)
    torch.manual_seed(0)
    model = hub.create_new_model(config, device=dev.device, dtype=torch.float32)
    extractor = SpeechFeatureExtractor(
        model, frame_averaging=2, dtype=dev.dtype, device=dev.device
    )
    generator = torch.Generator().manual_seed(1)
    waveforms = [
        0.1 * torch.randn(int(shapes.encoder_seconds * 16_000), generator=generator)
        for _ in range(shapes.encoder_waveforms)
    ]
    features: list[Tensor] = []

    def run() -> None:
        with torch.inference_mode():
            features[:] = [extractor(waveforms)[0]]

    seconds = time_steps(run, dev, shapes)
    audio = shapes.encoder_waveforms * shapes.encoder_seconds
    result = {
        "arch": shapes.encoder_arch,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "layer": config.output_layer,
        "dtype": str(dev.dtype).removeprefix("torch."),
        "batch": {
            "waveforms": shapes.encoder_waveforms,
            "seconds_each": shapes.encoder_seconds,
        },
        "seconds": summarize(seconds),
        "real_time_factor": round(summarize(seconds)["median"] / audio, 6),
        "features_finite": bool(torch.isfinite(features[0].float()).all()),
        "peak_memory": dev.peak_memory(),
    }
    return result


def build_llm(arch: str, dev: Device) -> tuple[TransformerLM, LLaMAConfig]:
    """A random frozen Llama in the stage-2 dtype (bf16 on a GPU)."""
    if arch.startswith("tiny_"):
        config = tiny_llama(2 if arch == "tiny_1b_shape" else 4)
    else:
        config = get_llama_model_hub().get_arch_config(arch)
    torch.manual_seed(0)
    llm = get_llama_model_hub().create_new_model(
        config, device=dev.device, dtype=dev.dtype
    )
    llm.requires_grad_(False)
    return llm, config


def stage2(arch: str, shapes: Shapes, dev: Device) -> dict[str, Any]:
    from speechmapper_plugin.losses.stage2 import response_cross_entropy

    dev.reset_peak()
    llm, llm_config = build_llm(arch, dev)
    projector = build_projector(shapes.projector_arch, llm_config.model_dim, dev)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=5e-5)
    features, layout = random_features(
        shapes.stage2_rows, shapes.stage2_frames, projector.config.input_dim, dev
    )
    generator = torch.Generator().manual_seed(2)

    def ids(n: int) -> list[list[int]]:
        rows = torch.randint(
            1, llm_config.vocab_size, (shapes.stage2_rows, n), generator=generator
        )
        return rows.tolist()

    prefix, suffix = ids(shapes.prompt_tokens - 5), ids(5)
    response = ids(shapes.response_tokens)
    speech_positions: list[int] = []

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with dev.autocast():
            speech, speech_layout = projector(features, layout, pre_averaged=True)
            speech_positions[:] = speech_layout.seq_lens
            ce, _ = response_cross_entropy(
                llm, speech, speech_layout.seq_lens, prefix, suffix, response
            )
        ce.backward()
        torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        optimizer.step()
        return ce

    seconds = time_steps(step, dev, shapes)
    loss = float(step().detach())
    llm_tokens = sum(speech_positions) + shapes.stage2_rows * (
        shapes.prompt_tokens + shapes.response_tokens
    )
    result = {
        "llm_arch": arch,
        "llm_parameters": sum(p.numel() for p in llm.parameters()),
        "llm_dtype": str(dev.dtype).removeprefix("torch."),
        "projector_parameters": sum(p.numel() for p in projector.parameters()),
        "batch": {
            "rows": shapes.stage2_rows,
            "frames": sum(layout.seq_lens),
            "llm_tokens": llm_tokens,
            "response_tokens": shapes.stage2_rows * shapes.response_tokens,
        },
        "step_seconds": summarize(seconds),
        "llm_tokens_per_second": round(llm_tokens / summarize(seconds)["median"], 1),
        "loss_finite": math.isfinite(loss),
        "peak_memory": dev.peak_memory(),
    }
    return result


def generation(shapes: Shapes, dev: Device) -> dict[str, Any]:
    from speechmapper_plugin.generation import (
        GenerationConfig,
        RepetitionGuardConfig,
        generate_from_embeddings,
    )

    dev.reset_peak()
    llm, config = build_llm(shapes.llm_archs[0], dev)
    llm.eval()
    generator = torch.Generator().manual_seed(3)
    lens = [shapes.gen_prompt_len - 2 * i for i in range(shapes.gen_rows)]
    embeds = 0.02 * torch.randn(
        shapes.gen_rows, shapes.gen_prompt_len, config.model_dim, generator=generator
    )
    embeds = embeds.to(dev.device, dev.dtype)
    # Exactly gen_new_tokens per row: the stop token is blocked until then.
    gen_config = GenerationConfig(
        max_new_tokens=shapes.gen_new_tokens,
        min_gen_len=shapes.gen_new_tokens + 1,
        repetition_guard=RepetitionGuardConfig(enabled=False),
    )
    generated: list[int] = []

    def run() -> None:
        results = generate_from_embeddings(
            llm, embeds, lens, stop_token_ids=[0], config=gen_config
        )
        generated[:] = [len(r.tokens) for r in results]

    seconds = time_steps(run, dev, shapes)
    tokens = shapes.gen_rows * shapes.gen_new_tokens
    result = {
        "llm_arch": shapes.llm_archs[0],
        "dtype": str(dev.dtype).removeprefix("torch."),
        "batch_size": shapes.gen_rows,
        "prompt_lens": [min(lens), max(lens)],
        "new_tokens_per_row": shapes.gen_new_tokens,
        "every_row_generated_all": generated == [shapes.gen_new_tokens] * len(lens),
        "seconds": summarize(seconds),
        "new_tokens_per_second": round(tokens / summarize(seconds)["median"], 1),
        "peak_memory": dev.peak_memory(),
    }
    return result


def device_environment(dev: Device) -> dict[str, Any]:
    env = environment()
    env["device"] = dev.name
    if dev.cuda:
        props = torch.cuda.get_device_properties(dev.device)
        env["gpu_memory_gb"] = round(props.total_memory / 1e9, 1)
        env["cuda"] = torch.version.cuda
        env["note"] = "random weights; one process on the GPU"
    else:
        env["note"] = "tiny shapes on the CPU: a smoke run, not GPU figures"
    return env


def default_output(dev: Device, tiny: bool) -> Path:
    if not dev.cuda:
        return RESULTS / "gpu_tiny_cpu.json"
    card = re.sub(r"[^a-z0-9]+", "_", dev.name.lower()).strip("_")
    return RESULTS / f"gpu_{card}{'_tiny' if tiny else ''}.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes (automatic without CUDA)"
    )
    parser.add_argument("--device", default=None, help="default: cuda if available")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--skip-8b", action="store_true", help="leave out the 8B stage-2 step"
    )
    args = parser.parse_args(argv)

    if fairseq2.runtime.dependency._resolver is None:  # not yet (tests have)
        init_fairseq2()
    device = torch.device(
        args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    )
    dev = Device(device)
    tiny = args.tiny or not dev.cuda
    if not dev.cuda:
        dev.dtype = torch.float32
    shapes = TINY if tiny else PAPER

    llm_archs = shapes.llm_archs[:1] if args.skip_8b else shapes.llm_archs
    result: dict[str, Any] = {
        "benchmark": "GPU figures: stage-1 MFU, encoder RTF, stage-2 step, generation",
        "shapes": "tiny (CPU smoke run)" if tiny else "paper",
        "stage1": stage1(shapes, dev),
        "encoder": encoder_rtf(shapes, dev),
        "stage2": {arch: stage2(arch, shapes, dev) for arch in llm_archs},
        "generation": generation(shapes, dev),
        "targets": {
            "stage1_mfu_bf16_h100": f">= {TARGET_STAGE1_MFU}",
            "stage2_8b_peak_memory_gb": f"< {TARGET_STAGE2_8B_MEMORY_GB} (one 80 GB GPU)",
        },
        "environment": device_environment(dev),
    }
    write_result(args.output or default_output(dev, tiny), result)
    return result


if __name__ == "__main__":
    main()
