"""What every benchmark shares: interleaved timing, median and spread, the
machine's description, JSON output, and the synthetic stage-1 assets (a
feature store and a target LLM written in their real formats).

The CPU these run on is shared: both sides of a ratio are timed in turn
(A B A B ...), warm-up runs are discarded, and every figure is reported as the
median with its min and max; a ratio is taken pair by pair.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "cpu": time.process_time,
}
"""``--clock``: wall time, or this process's CPU time (steadier on a shared
machine; every thread's time counts)."""

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median, min, max and relative spread ((max - min) / median)."""
    med = statistics.median(values)
    return {
        "median": round(med, digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "spread": round((max(values) - min(values)) / med, 3) if med else None,
        "n": len(values),
        "values": [round(v, digits) for v in values],
    }


def pairwise_ratio(
    numerators: Sequence[float], denominators: Sequence[float]
) -> dict[str, Any]:
    """The ratio of run i of one side to run i of the other, summarised."""
    return summarize([a / b for a, b in zip(numerators, denominators, strict=True)])


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Runs every function ``warmup`` times (not timed), then ``repeats``
    rounds of each in turn; returns the seconds of each and its last output.
    ``clock`` measures them: wall time, or ``time.process_time`` (this
    process's CPU time, which other processes on a shared machine disturb
    less)."""
    outputs: dict[str, Any] = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            outputs[name] = fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync is not None:
                sync()
            start = clock()
            outputs[name] = fn()
            if sync is not None:
                sync()
            seconds[name].append(clock() - start)
    return seconds, outputs


def environment() -> dict[str, Any]:
    return {
        "device": "cpu",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "note": "shared machine: other processes ran at the same time",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_result(path: Path, result: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


def peak_rss_bytes() -> int:
    """The process's peak resident set (VmHWM)."""
    return _status_kib("VmHWM") * 1024


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")
