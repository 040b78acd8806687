"""Times our SeamlessM4T-v2 speech encoder against transformers' on CPU.

Both run the same computation on the same weights and the same padded batch:
the feature projection, every Conformer block and the final LayerNorm
(transformers: ``feature_projection`` + ``encoder`` of
``SeamlessM4Tv2SpeechEncoder`` with its attention mask; ours:
``SM4TSpeechEncoder(layer=L, layer_norm=True)``). The fbank front end is
excluded (transformers' is numpy). Runs are interleaved and the median of each
and best (minimum) of each are reported, so load from other processes affects
both alike; the headline ``ratio`` uses the best times, which are the least
disturbed by other processes on a shared machine.

    python benchmarks/bench_sm4t_encoder.py            # mid-size config
    python benchmarks/bench_sm4t_encoder.py --repeats 9 --output out.json

Writes ``benchmarks/results/sm4t_encoder_cpu.json``; ``ratio`` is
ours / transformers (below 1.0: ours is faster). ``ratio_fairseq2_sdpa`` is the
same with ``shaw_sdpa="fairseq2"`` (fairseq2's own Shaw attention module).

``real_time_factor``: seconds of compute per second of audio of the whole
extraction (``SpeechFeatureExtractor``: fbank, encoder, LayerNorm, 2:1 frame
averaging) on the same 4 random waveforms, for the ``tiny`` config (64-d, 4
layers) and the mid-size one above, both timed in turn after a warm-up.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from fairseq2.nn import BatchLayout  # noqa: E402
from torch import Tensor  # noqa: E402

from speechmapper_plugin.models.sm4t_speech_encoder import (  # noqa: E402
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    convert_sm4t_speech_encoder_state_dict,
    create_sm4t_speech_encoder_model,
)

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "sm4t_encoder_cpu.json"


def build_transformers_encoder(config: SM4TSpeechEncoderConfig) -> torch.nn.Module:
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import (
        SeamlessM4Tv2SpeechEncoder,
    )

    hf_config = SeamlessM4Tv2Config(
        hidden_size=config.model_dim,
        speech_encoder_layers=config.num_encoder_layers,
        speech_encoder_attention_heads=config.num_encoder_attn_heads,
        speech_encoder_intermediate_size=config.ffn_inner_dim,
        conv_depthwise_kernel_size=config.depthwise_conv_kernel_size,
        left_max_position_embeddings=config.max_lhs_rel_pos,
        right_max_position_embeddings=config.max_rhs_rel_pos,
        feature_projection_input_dim=config.feature_dim,
        speech_encoder_dropout=0.0,
        speech_encoder_layerdrop=0.0,
    )

    torch.manual_seed(0)
    return SeamlessM4Tv2SpeechEncoder(hf_config).eval()


def build_ours(
    config: SM4TSpeechEncoderConfig, hf_encoder: torch.nn.Module
) -> SM4TSpeechEncoder:
    model = create_sm4t_speech_encoder_model(config).eval()

    hf_state = {f"speech_encoder.{k}": v for k, v in hf_encoder.state_dict().items()}
    model.load_state_dict(convert_sm4t_speech_encoder_state_dict(hf_state, config))

    return model


def make_batch(seconds: list[float], num_channels: int) -> tuple[Tensor, list[int]]:
    """Random standardised fbanks (100 frames/s), right-padded."""
    generator = torch.Generator().manual_seed(0)
    # An even length per row so both implementations see identical frames.
    lens = [2 * int(s * 50) for s in seconds]
    batch = torch.zeros(len(lens), max(lens), num_channels)
    for i, n in enumerate(lens):
        batch[i, :n] = torch.randn(n, num_channels, generator=generator)
    return batch, lens


def time_interleaved(
    fns: dict[str, Callable[[], Tensor]], repeats: int
) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up
        fn()

    timings: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    return timings


def real_time_factors(
    mid: SM4TSpeechEncoderConfig, args: argparse.Namespace
) -> dict[str, Any]:
    """Compute seconds per audio second of the full extraction, tiny and mid-size."""
    from speechmapper_plugin.models.sm4t_speech_encoder import SpeechFeatureExtractor
    from speechmapper_plugin.tiny_assets import SM4T_TINY_DIMS

    tiny = SM4TSpeechEncoderConfig(
        **SM4T_TINY_DIMS,
        output_layer=SM4T_TINY_DIMS["num_encoder_layers"],
        output_layer_norm=True,
    )
    torch.manual_seed(0)
    extractors = {
        name: SpeechFeatureExtractor(
            create_sm4t_speech_encoder_model(config), frame_averaging=2
        )
        for name, config in (("tiny", tiny), ("mid_size", mid))
    }
    generator = torch.Generator().manual_seed(1)
    waveforms = [
        0.1 * torch.randn(int(s * 16_000), generator=generator) for s in args.seconds
    ]
    audio_seconds = sum(args.seconds)

    fns = {name: (lambda e=e: e(waveforms)[0]) for name, e in extractors.items()}
    timings = time_interleaved(fns, args.repeats)
    return {
        name: {
            "config": {
                "model_dim": extractors[name].model.config.model_dim,
                "num_encoder_layers": extractors[name].model.config.num_encoder_layers,
            },
            "audio_seconds": audio_seconds,
            "median": round(statistics.median(t) / audio_seconds, 5),
            "min": round(min(t) / audio_seconds, 5),
            "max": round(max(t) / audio_seconds, 5),
        }
        for name, t in timings.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dim", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=12)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--ffn-inner-dim", type=int, default=2048)
    parser.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=[10.0, 9.0, 8.0, 7.0],
        help="utterance durations of the batch",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)

    base = SM4TSpeechEncoderConfig(
        model_dim=args.model_dim,
        num_encoder_layers=args.num_layers,
        num_encoder_attn_heads=args.num_heads,
        ffn_inner_dim=args.ffn_inner_dim,
        output_layer=args.num_layers,
        output_layer_norm=True,
    )

    hf_encoder = build_transformers_encoder(base)
    ours = {
        impl: build_ours(
            SM4TSpeechEncoderConfig(**{**base.__dict__, "shaw_sdpa": impl}),
            hf_encoder,
        )
        for impl in ("gathered", "fairseq2")
    }

    fbank, fbank_lens = make_batch(args.seconds, base.num_fbank_channels)
    layout = BatchLayout.of(fbank, fbank_lens)

    batch_size, num_fbank_frames, _ = fbank.shape
    stride = base.fbank_stride
    stacked = fbank.reshape(batch_size, num_fbank_frames // stride, -1)
    mask = torch.zeros(batch_size, num_fbank_frames // stride, dtype=torch.long)
    for i, n in enumerate(fbank_lens):
        mask[i, : n // stride] = 1

    def run_transformers() -> Tensor:
        hidden = hf_encoder.feature_projection(stacked)
        return hf_encoder.encoder(hidden, attention_mask=mask).last_hidden_state

    def runner(model: SM4TSpeechEncoder) -> Callable[[], Tensor]:
        return lambda: model(fbank, layout)[0]

    fns = {
        "ours": runner(ours["gathered"]),
        "ours_fairseq2_sdpa": runner(ours["fairseq2"]),
        "transformers": run_transformers,
    }

    with torch.inference_mode():
        reference = run_transformers()
        diffs = {}
        for name in ("ours", "ours_fairseq2_sdpa"):
            out = fns[name]()
            diffs[name] = max(
                (out[i, : n // stride] - reference[i, : n // stride]).abs().max().item()
                for i, n in enumerate(fbank_lens)
            )

        timings = time_interleaved(fns, args.repeats)

    medians = {name: statistics.median(t) for name, t in timings.items()}
    best = {name: min(t) for name, t in timings.items()}

    result: dict[str, Any] = {
        "benchmark": "SeamlessM4T-v2 speech encoder forward (fbank -> last layer + LayerNorm)",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "dtype": "float32",
        "config": {
            "model_dim": base.model_dim,
            "num_encoder_layers": base.num_encoder_layers,
            "num_encoder_attn_heads": base.num_encoder_attn_heads,
            "ffn_inner_dim": base.ffn_inner_dim,
            "depthwise_conv_kernel_size": base.depthwise_conv_kernel_size,
            "rel_pos_clip": [-base.max_lhs_rel_pos, base.max_rhs_rel_pos],
        },
        "batch": {
            "seconds": args.seconds,
            "encoder_frames": [n // stride for n in fbank_lens],
        },
        "repeats": args.repeats,
        "best_seconds": best,
        "median_seconds": medians,
        "all_seconds": timings,
        "max_abs_diff_vs_transformers": diffs,
        "ratio": best["ours"] / best["transformers"],
        "ratio_median": medians["ours"] / medians["transformers"],
        "ratio_fairseq2_sdpa": best["ours_fairseq2_sdpa"] / best["transformers"],
    }

    result["real_time_factor"] = real_time_factors(base, args)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "best_seconds",
                    "median_seconds",
                    "ratio",
                    "ratio_median",
                    "ratio_fairseq2_sdpa",
                    "max_abs_diff_vs_transformers",
                    "real_time_factor",
                )
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
