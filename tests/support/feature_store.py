"""Feature stores with chosen contents, written through the store's own writer.

For tests of the stage-1 dataset and recipe that need features no encoder
would produce (NaN, exact lengths, mismatched widths).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from speechmapper_plugin.data.feature_store import (
    FeatureStoreMetadata,
    ShardWriter,
    create_or_check_store,
    merge_index,
    plan_shards,
    storage_dtype,
)
from speechmapper_plugin.data.manifest import ManifestRow


@dataclass(frozen=True)
class Utterance:
    id: str
    features: torch.Tensor
    """``[frames, dim]`` (already averaged, as stores hold them)."""
    transcript: str


def write_feature_store(
    store: Path,
    utterances: Sequence[Utterance],
    *,
    frame_averaging: int = 2,
    dtype: str = "float32",
    rows_per_shard: int = 4,
    encoder: str = "synthetic",
    layer: int = 1,
    layer_norm: bool = True,
) -> Path:
    dim = utterances[0].features.size(1)
    torch_dtype = storage_dtype(dtype)
    metadata = FeatureStoreMetadata(
        dim=dim,
        dtype=dtype,
        frame_averaging=frame_averaging,
        frame_rate=50.0 / frame_averaging,
        encoder=encoder,
        layer=layer,
        layer_norm=layer_norm,
        manifest=str(store / "synthetic.tsv"),
        manifest_sha256="0" * 64,
        audio_root=str(store),
        rows_per_shard=rows_per_shard,
        num_shards=len(plan_shards(len(utterances), rows_per_shard)),
        num_rows=len(utterances),
    )
    create_or_check_store(store, metadata, [])
    for plan in plan_shards(len(utterances), rows_per_shard):
        writer = ShardWriter(store, plan, dim=dim, dtype=torch_dtype)
        for position in range(plan.start, plan.stop):
            utt = utterances[position]
            row = ManifestRow(
                id=utt.id,
                audio=store / f"{utt.id}.wav",
                transcript=utt.transcript,
                lang="en",
                line_no=position + 2,
            )
            num_samples = utt.features.size(0) * frame_averaging * 320
            writer.add(position, row, utt.features.to(torch_dtype), num_samples)
        writer.finish()
    merge_index(store)
    return store
