"""The assets stage-1 benchmarks train on, written in their real formats: a
feature store (through the store's own writer) of random 25 Hz features, and a
target LLM (Hugging Face safetensors directory, Llama 3 tokenizer, fairseq2
card) whose embedding width matches the benchmark projector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechmapper_plugin.models.speechmapper import (
    ProjectorBlockConfig,
    SpeechMapperConfig,
)
from speechmapper_plugin.tiny_assets import (
    TinyLlamaDims,
    training_sentences,
    write_card_file,
    write_tiny_llama3,
)
from tests.support.feature_store import Utterance, write_feature_store

FEATURE_DIM = 512
EMBED_DIM = 512


def bench_projector_config(*, dropout_p: float = 0.1) -> SpeechMapperConfig:
    """The paper's two-block shape at 512-d, 4 layers per block: 29M parameters,
    enough that compute, not bookkeeping, dominates a CPU step."""
    block = ProjectorBlockConfig(
        model_dim=512,
        output_dim=512,
        num_layers=4,
        num_attn_heads=8,
        ffn_inner_dim=2048,
    )
    return SpeechMapperConfig(
        input_dim=FEATURE_DIM,
        blocks=[block, block],
        output_dim=EMBED_DIM,
        dropout_p=dropout_p,
    )


def projector_overrides(config: SpeechMapperConfig) -> dict[str, Any]:
    """``model.config_overrides`` that make the recipe build ``config``."""
    return {
        "input_dim": config.input_dim,
        "output_dim": config.output_dim,
        "dropout_p": config.dropout_p,
        "blocks": [dict(vars(b)) for b in config.blocks],
    }


@dataclass(frozen=True)
class Stage1Assets:
    store: Path
    card_dir: Path
    llm_card: str
    sentences: list[str]


def write_stage1_assets(
    root: Path,
    *,
    num_utterances: int = 128,
    min_frames: int = 150,
    max_frames: int = 350,
    dtype: str = "float16",
) -> Stage1Assets:
    """Writes (once; reused if present) the store and the target LLM under ``root``."""
    sentences = training_sentences(600)
    spoken = sentences[-num_utterances:]
    llm_dir = root / "llm"
    card_dir = root / "cards"
    store = root / f"store_{dtype}_{num_utterances}"
    if not (card_dir / "llm.yaml").exists():
        llm = write_tiny_llama3(
            llm_dir,
            card_name="bench_llama",
            sentences=sentences,
            dims=TinyLlamaDims(model_dim=EMBED_DIM, intermediate_size=1024),
        )
        write_card_file(card_dir / "llm.yaml", [llm.card])
    if not (store / "index.jsonl").exists():
        generator = torch.Generator().manual_seed(0)
        lengths = torch.randint(
            min_frames, max_frames + 1, (num_utterances,), generator=generator
        )
        utterances = [
            Utterance(
                id=f"utt{i:04d}",
                features=torch.randn(int(n), FEATURE_DIM, generator=generator),
                transcript=text,
            )
            for i, (n, text) in enumerate(zip(lengths.tolist(), spoken, strict=True))
        ]
        write_feature_store(store, utterances, dtype=dtype, rows_per_shard=32)
    return Stage1Assets(
        store=store, card_dir=card_dir, llm_card="bench_llama", sentences=spoken
    )
