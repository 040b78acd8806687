"""``benchmarks/bench_gpu.py`` at tiny shapes on the CPU, so the GPU script
cannot rot between the rare runs on a GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_gpu import PEAK_TFLOPS, main, peak_tflops


def _numbers(tree: Any) -> list[float]:
    if isinstance(tree, bool):
        return []
    if isinstance(tree, int | float):
        return [float(tree)]
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in _numbers(v)]
    return []


def test_tiny_cpu_run_writes_finite_figures(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    # one thread: tiny ops on a busy machine spend their time in thread sync
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(["--tiny", "--device", "cpu", "--output", str(out)])
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())

    assert result["shapes"] == "tiny (CPU smoke run)"
    numbers = _numbers(result)
    assert numbers and all(math.isfinite(x) for x in numbers)

    stage1 = result["stage1"]
    assert stage1["loss_finite"] is True
    assert stage1["frames_per_second"] > 0
    # A forward + backward costs more than 2 x params x output positions
    # (the final projection alone); FlopCounterMode saw the real step.
    assert stage1["flops_per_step"] > 2 * stage1["num_parameters"]
    assert stage1["mfu"] is None  # no 16-bit peak for a CPU

    assert 0 < result["encoder"]["real_time_factor"]
    assert result["encoder"]["features_finite"] is True

    stage2 = result["stage2"]
    assert set(stage2) == {"tiny_1b_shape", "tiny_8b_shape"}
    # the deeper stand-in for the 8B LLM is bigger than the 1B one
    assert (
        stage2["tiny_8b_shape"]["llm_parameters"]
        > (stage2["tiny_1b_shape"]["llm_parameters"])
    )
    for step in stage2.values():
        assert step["loss_finite"] is True
        assert step["peak_memory"]["gb"] > 0

    gen = result["generation"]
    assert gen["every_row_generated_all"] is True
    assert gen["new_tokens_per_second"] > 0


def test_peak_table_matches_card_names() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3") == PEAK_TFLOPS["H100"]
    assert peak_tflops("NVIDIA H100 PCIe")[0] == 756.0  # type: ignore[index]
    assert peak_tflops("NVIDIA H200")[0] == 989.0  # type: ignore[index]
    assert peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0  # type: ignore[index]
    assert peak_tflops("Tesla V100-SXM2-32GB")[0] == 125.0  # type: ignore[index]
    assert peak_tflops("NVIDIA GeForce RTX 3090") is None
