"""Stage 1 with a large target LLM loads only the embedding table.

Each checkpoint holds a 128 KiB embedding table next to a decoder tensor far
beyond the load's memory budget (48 MiB): 1 GiB in a sparse safetensors file
(a hole: no disk, no RAM unless read), 256 MiB in a ``.pt``. We reset the
process's peak RSS (Linux ``/proc/self/clear_refs``), load the table and check
that the peak grew by less than the budget. Control measurements show that
reading part of either decoder does blow the budget, so the check can fail.
The sharded case is exact in test_llm_token_embeddings.py (the decoder shards
are deleted before loading).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
import torch
from safetensors import safe_open

from speechmapper_plugin.llm import load_token_embeddings

VOCAB, DIM = 512, 64
DECODER_KEY = "model.layers.0.mlp.up_proj.weight"
DECODER_COLUMNS = 4096
BUDGET_MIB = 48

T = TypeVar("T")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"{field} missing from /proc/self/status")


def peak_growth_mib(action: Callable[[], T]) -> tuple[float, T]:
    """How far the peak RSS rises above the current RSS while ``action`` runs."""
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status_mib("VmRSS")
    result = action()
    return _status_mib("VmHWM") - before, result


def write_sparse_safetensors(
    path: Path, table: torch.Tensor, decoder_bytes: int
) -> None:
    """A valid safetensors file whose decoder tensor is a hole."""
    header = {
        DECODER_KEY: {
            "dtype": "F32",
            "shape": [decoder_bytes // 4 // DECODER_COLUMNS, DECODER_COLUMNS],
            "data_offsets": [0, decoder_bytes],
        },
        "model.embed_tokens.weight": {
            "dtype": "F32",
            "shape": list(table.shape),
            "data_offsets": [decoder_bytes, decoder_bytes + table.numel() * 4],
        },
    }
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)

    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        f.seek(decoder_bytes, os.SEEK_CUR)
        f.write(table.numpy().tobytes())


@pytest.fixture(scope="module")
def can_measure() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as ex:
        pytest.skip(f"needs Linux peak-RSS reset (/proc/self/clear_refs): {ex}")


def test_only_the_embedding_table_is_read(can_measure: None, tmp_path: Path) -> None:
    table = torch.randn(VOCAB, DIM)

    sparse = tmp_path / "model.safetensors"
    write_sparse_safetensors(sparse, table, decoder_bytes=1 << 30)
    assert sparse.stat().st_blocks * 512 < 16 << 20  # the decoder takes no disk

    pt = tmp_path / "model.pt"
    torch.save(
        {
            DECODER_KEY: torch.zeros(16384, DECODER_COLUMNS),
            "model.embed_tokens.weight": table,
        },
        pt,
    )

    for path in (sparse, pt):
        growth, loaded = peak_growth_mib(partial(load_token_embeddings, path))
        assert growth < BUDGET_MIB, (path.name, growth)
        assert torch.equal(loaded, table)

    # Controls: reading (part of) a decoder is visible to this measurement.
    def read_quarter_of_sparse_decoder() -> object:
        with safe_open(str(sparse), "pt") as f:
            return f.get_tensor(DECODER_KEY)[:16384].sum()

    def torch_load_without_mmap() -> object:
        return torch.load(pt, weights_only=True)

    assert peak_growth_mib(read_quarter_of_sparse_decoder)[0] > 200
    assert peak_growth_mib(torch_load_without_mmap)[0] > 200
