"""Serving throughput: 32 concurrent clients against the same 32 requests sent
one after another, to ``speechmapper serve`` in a subprocess (issue 20 item 6).

The server serves an export of the tiny test models (the test suite's cards:
SeamlessM4T-v2 encoder, tiny projector, tiny Llama-3-style LLM) on CPU with one
OpenMP thread, batching up to 32 requests that arrive within ``--max-wait-ms``.
Each request is a ``POST /v1/audio/transcriptions`` of its own tone (1.0 to
2.5 s), greedy, ``--max-new-tokens`` tokens at most.

- sequential: one client sends the 32 requests one after another (each waits
  for the previous answer; the server never has two to batch).
- concurrent: 32 clients (threads) each send one of the same requests at once.

``speedup`` = sequential wall time ÷ concurrent wall time for the 32 requests
(target >= 3 on CPU), taken pair by pair over ``--repeats`` rounds run in turn
after one warm-up round each; p50 and p95 are the latencies of single requests
over all timed rounds. Both modes must return the same text for each request
(greedy answers do not depend on the batch).

    python -m benchmarks.bench_serve [--repeats 3] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import (  # noqa: E402
    RESULTS,
    environment,
    pairwise_ratio,
    summarize,
    write_result,
)
from tests.support.audio import tone, write_wav  # noqa: E402
from tests.support.cards import build_test_cards  # noqa: E402
from tests.support.serving import (  # noqa: E402
    EXPORT_NAME,
    export_test_projector,
    serve,
)

DEFAULT_OUTPUT = RESULTS / "serve_cpu.json"

CLIENTS = 32

TARGET = ">= 3"
"""Concurrent ÷ sequential throughput on CPU (issue 20)."""

Answer = tuple[str, float]
"""A response's text and its latency in seconds."""


def write_requests(directory: Path, count: int) -> list[bytes]:
    """``count`` WAV files of distinct tones, 1.0 to 2.5 s, as bytes."""
    lengths = np.linspace(1.0, 2.5, count)
    return [
        write_wav(
            directory / f"r{i}.wav",
            tone(float(seconds), freq=150.0 + 7.0 * i, seed=i),
        ).read_bytes()
        for i, seconds in enumerate(lengths)
    ]


def transcribe(client: httpx.Client, url: str, audio: bytes) -> Answer:
    start = time.perf_counter()
    response = client.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("a.wav", audio, "audio/wav")},
        data={"model": EXPORT_NAME},
    )
    latency = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text}")
    return str(response.json()["text"]), latency


def sequential(client: httpx.Client, url: str, audios: Sequence[bytes]) -> list[Answer]:
    return [transcribe(client, url, audio) for audio in audios]


def concurrent(
    client: httpx.Client, url: str, audios: Sequence[bytes], pool: ThreadPoolExecutor
) -> list[Answer]:
    return list(pool.map(lambda audio: transcribe(client, url, audio), audios))


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"p50_s": round(float(p50), 4), "p95_s": round(float(p95), 4)}


def run(
    url: str, audios: Sequence[bytes], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str]]:
    """Wall seconds per round and request latencies of each mode, timed in
    turn after a warm-up round each; raises if the modes' answers differ."""
    limits = httpx.Limits(max_connections=2 * CLIENTS)
    with (
        httpx.Client(timeout=600.0, limits=limits) as client,
        ThreadPoolExecutor(CLIENTS) as pool,
    ):
        modes: dict[str, Callable[[], list[Answer]]] = {
            "sequential": lambda: sequential(client, url, audios),
            "concurrent": lambda: concurrent(client, url, audios, pool),
        }
        walls: dict[str, list[float]] = {name: [] for name in modes}
        latencies: dict[str, list[float]] = {name: [] for name in modes}
        texts: dict[str, list[str]] = {}
        for round_ in range(repeats + 1):
            for name, fn in modes.items():
                start = time.perf_counter()
                answers = fn()
                wall = time.perf_counter() - start
                texts[name] = [text for text, _ in answers]
                if round_ > 0:  # round 0 warms up
                    walls[name].append(wall)
                    latencies[name].extend(latency for _, latency in answers)
            if texts["sequential"] != texts["concurrent"]:
                differ = sum(
                    a != b
                    for a, b in zip(
                        texts["sequential"], texts["concurrent"], strict=True
                    )
                )
                raise AssertionError(
                    f"{differ} of {len(audios)} answers differ between one by one and batched"
                )
    return walls, latencies, texts["sequential"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets
    from fairseq2.runtime.dependency import DependencyContainer

    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        root = Path(tmp)
        card_dir = root / "cards"
        card_dir.mkdir()

        def extras(container: DependencyContainer) -> None:
            register_file_assets(container, card_dir)

        init_fairseq2(extras=extras)
        build_test_cards(root / "assets", card_dir)
        export = export_test_projector(root / "export")
        audios = write_requests(root, CLIENTS)

        load_before = os.getloadavg()
        with serve(
            str(export),
            "--asset-dir",
            str(card_dir),
            "--device",
            "cpu",
            "--max-batch-size",
            str(CLIENTS),
            "--max-wait-ms",
            str(args.max_wait_ms),
            "--max-new-tokens",
            str(args.max_new_tokens),
            cwd=root,
            timeout=300.0,
        ) as server:
            walls, latencies, texts = run(server.url, audios, args.repeats)
            health = httpx.get(f"{server.url}/health", timeout=10.0).json()
        load_after = os.getloadavg()

    requests = len(audios)
    result: dict[str, Any] = {
        "benchmark": "serve: 32 concurrent clients vs the same requests one after another",
        "environment": {
            **environment(),
            "server_threads": 1,
            "load_average_1m_before_after": [
                round(load_before[0], 2),
                round(load_after[0], 2),
            ],
        },
        "setup": {
            "models": "tests' tiny cards: test_sm4t_hf layer 4 + test_projector_llama export + test_llama",
            "endpoint": "POST /v1/audio/transcriptions (greedy)",
            "requests": requests,
            "clients": CLIENTS,
            "audio_seconds": [1.0, 2.5],
            "max_new_tokens": args.max_new_tokens,
            "max_batch_size": CLIENTS,
            "max_wait_ms": args.max_wait_ms,
            "repeats": args.repeats,
            "distinct_answers": len(set(texts)),
        },
        "speedup": {
            **pairwise_ratio(walls["sequential"], walls["concurrent"]),
            "target": TARGET,
        },
        "throughput_rps": {
            name: summarize([requests / wall for wall in walls[name]], 2)
            for name in walls
        },
        "latency": {name: percentiles(values) for name, values in latencies.items()},
        "server_stats": {
            k: health[k] for k in ("requests", "batches", "largest_batch")
        },
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
