"""Feature store: bytes per hour of audio (fp16, bf16) and read throughput,
and what caching buys: stage 1 reading features from the store against
recomputing them with the speech encoder on the fly.

1. Size: a full-width store (1024-d, 2:1 averaged to 25 Hz, as the paper's
   layer-24 features) of 40 random 10 s utterances is written through the
   store's writer in fp16 and in bf16; ``MB_per_hour`` = all of the store's
   bytes on disk / hours of audio.
2. Read throughput: every entry of the fp16 store read back (page cache warm)
   in frames/s and MB/s.
3. Caching: for one batch of 4 utterances (7-10 s), the features (a) read from
   a store, (b) extracted from the waveforms by ``SpeechFeatureExtractor``
   (fbank + SeamlessM4T-v2 encoder, mid-size: 512-d, 12 layers, random
   weights, fp32) and (c) one stage-1 training step on them (29M-parameter
   projector). ``extract_over_read`` = (b) / (a);
   ``stage1_step_with_extraction_over_with_store`` = ((b) + (c)) / ((a) + (c)),
   pair by pair. The full-size encoder (1024-d, 24 layers) costs about 8x the
   mid-size one per second of audio (FLOPs), so its ratios are larger still.

    python -m benchmarks.bench_feature_store [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from fairseq2.nn import BatchLayout

from benchmarks.harness import (
    RESULTS,
    environment,
    pairwise_ratio,
    summarize,
    time_interleaved,
    write_result,
)
from benchmarks.stage1_assets import bench_projector_config
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.losses import embedding_mse_loss
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoderConfig,
    SpeechFeatureExtractor,
    create_sm4t_speech_encoder_model,
)
from speechmapper_plugin.models.speechmapper import create_speechmapper_model
from speechmapper_plugin.padding import pad_sequences
from tests.support.feature_store import Utterance, write_feature_store

DEFAULT_OUTPUT = RESULTS / "feature_store_cpu.json"

SAMPLE_RATE = 16_000
FRAME_RATE = 25  # after 2:1 averaging


def store_size(root: Path, dtype: str, *, dim: int = 1024) -> dict[str, Any]:
    seconds, count = 10, 40
    generator = torch.Generator().manual_seed(0)
    utterances = [
        Utterance(
            id=f"u{i:03d}",
            features=torch.randn(seconds * FRAME_RATE, dim, generator=generator),
            transcript="a transcript of about ten words for the index line",
        )
        for i in range(count)
    ]
    store = write_feature_store(
        root / f"size_{dtype}", utterances, dtype=dtype, rows_per_shard=16
    )
    nbytes = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    hours = seconds * count / 3600
    return {
        "dim": dim,
        "frame_rate_hz": FRAME_RATE,
        "audio_hours": round(hours, 4),
        "store_bytes": nbytes,
        "MB_per_hour": round(nbytes / 1e6 / hours, 1),
        "tensor_MB_per_hour": round(FRAME_RATE * 3600 * dim * 2 / 1e6, 1),
        "path": store,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        root = Path(tmp)
        sizes = {dtype: store_size(root, dtype) for dtype in ("float16", "bfloat16")}
        store = FeatureStore(sizes["float16"].pop("path"))
        sizes["bfloat16"].pop("path")

        def read_all() -> int:
            return sum(store.read(e).size(0) for e in store.entries)

        read_seconds, frames = time_interleaved({"read": read_all}, args.repeats)
        frames_read = frames["read"]
        bytes_read = frames_read * 1024 * 2

        caching = caching_ratio(root, args)

    result = {
        "benchmark": "feature store: size, read throughput, and caching vs recomputing",
        "size": sizes,
        "read": {
            "frames_per_pass": frames_read,
            "frames_per_second": summarize(
                [frames_read / s for s in read_seconds["read"]], 1
            ),
            "MB_per_second": summarize(
                [bytes_read / 1e6 / s for s in read_seconds["read"]], 1
            ),
            "note": "page cache warm (the store was just written)",
        },
        "caching": caching,
        "environment": environment(),
    }
    write_result(args.output, result)


def caching_ratio(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    encoder_config = SM4TSpeechEncoderConfig(
        model_dim=512,
        num_encoder_layers=12,
        num_encoder_attn_heads=8,
        ffn_inner_dim=2048,
        output_layer=12,
        output_layer_norm=True,
    )
    torch.manual_seed(0)
    extractor = SpeechFeatureExtractor(
        create_sm4t_speech_encoder_model(encoder_config), frame_averaging=2
    )
    seconds = [10.0, 9.0, 8.0, 7.0]
    generator = torch.Generator().manual_seed(1)
    waveforms = [
        0.1 * torch.randn(int(s * SAMPLE_RATE), generator=generator) for s in seconds
    ]
    features, lens = extractor(waveforms)

    store = FeatureStore(
        write_feature_store(
            root / "batch_store",
            [
                Utterance(id=f"b{i}", features=features[i, : int(n)], transcript="x")
                for i, n in enumerate(lens.tolist())
            ],
            dtype="float16",
        )
    )

    projector_config = bench_projector_config()
    projector_config = projector_config.__class__(
        **{**vars(projector_config), "input_dim": encoder_config.model_dim}
    )
    torch.manual_seed(2)
    projector = create_speechmapper_model(projector_config).train()
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-4)
    table = torch.randn(512, projector_config.output_dim)
    target_ids = torch.randint(0, 512, (len(seconds), 20))
    target_lens = torch.full((len(seconds),), 20)

    def read() -> tuple[torch.Tensor, list[int]]:
        rows = [store.read(e, dtype=torch.float32) for e in store.entries]
        batch, _ = pad_sequences(rows)
        return batch, [r.size(0) for r in rows]

    def extract() -> tuple[torch.Tensor, list[int]]:
        out, out_lens = extractor(waveforms)
        return out, out_lens.tolist()

    batch, batch_lens = read()

    def train() -> float:
        layout = BatchLayout.of(batch, batch_lens)
        outputs, out_layout = projector(batch, layout, pre_averaged=True)
        loss = embedding_mse_loss(
            outputs,
            out_layout.seq_lens_pt,
            table[target_ids],
            target_lens,
            table[0],
            alpha=9.0,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        return float(loss.total.detach())

    times, _ = time_interleaved(
        {"read": read, "extract": extract, "train_step": train}, args.repeats
    )
    audio_seconds = sum(seconds)
    with_extraction = [
        e + t for e, t in zip(times["extract"], times["train_step"], strict=True)
    ]
    with_store = [
        r + t for r, t in zip(times["read"], times["train_step"], strict=True)
    ]
    return {
        "batch_audio_seconds": audio_seconds,
        "encoder": "SeamlessM4T-v2 speech encoder, 512-d, 12 layers, random weights, fp32, fbank included",
        "seconds": {k: summarize(v) for k, v in times.items()},
        "real_time_factor": {
            "extract": summarize([t / audio_seconds for t in times["extract"]], 5),
            "read": summarize([t / audio_seconds for t in times["read"]], 6),
        },
        "extract_over_read": pairwise_ratio(times["extract"], times["read"]),
        "stage1_step_with_extraction_over_with_store": pairwise_ratio(
            with_extraction, with_store
        ),
    }


if __name__ == "__main__":
    main()
