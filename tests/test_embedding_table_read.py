"""The embedding table is read straight into its tensor: the same values as
safetensors' own reader, and a peak memory of about the table alone (a copy
out of a memory map can peak at twice the table)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from speechmapper_plugin.llm import load_token_embeddings, locate_token_embeddings
from speechmapper_plugin.llm.token_embeddings import TokenEmbeddingLoadError
from speechmapper_plugin.metrics.embedding_space import row_norm_ratio

KEY = "model.embed_tokens.weight"


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _release_free_heap() -> None:
    """Hand memory freed by earlier tests back to the OS (glibc's
    ``malloc_trim``). Freed heap pages otherwise stay resident, and an
    allocation that reuses them does not raise the peak RSS: the measured
    growth then depends on what ran before in the process."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _peak_growth(fn: object) -> int:
    gc.collect()
    _release_free_heap()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status_bytes("VmRSS")
    result = fn()  # type: ignore[operator]
    growth = _status_bytes("VmHWM") - before
    del result
    return growth


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_table_equals_safetensors_reader(tmp_path: Path, dtype: torch.dtype) -> None:
    path = tmp_path / "model.safetensors"
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "model.layers.0.mlp.up_proj.weight": torch.randn(48, 16, generator=generator),
        KEY: torch.randn(100, 24, generator=generator).to(dtype),
        "lm_head.weight": torch.randn(100, 24, generator=generator),
    }
    save_file(tensors, path)

    table = load_token_embeddings(path)

    with safe_open(str(path), framework="pt") as f:
        expected = f.get_tensor(KEY)
    assert table.dtype == dtype
    assert torch.equal(table, expected)
    assert torch.equal(
        load_token_embeddings(path, dtype=torch.float64), expected.double()
    )


def test_truncated_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({KEY: torch.randn(64, 32)}, path)
    source = locate_token_embeddings(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])

    # Found before the file was cut, read after: the read says so.
    with pytest.raises(TokenEmbeddingLoadError, match="ends inside"):
        source.read()
    # Cut before it is located: refused when its header is checked.
    with pytest.raises(
        TokenEmbeddingLoadError, match="cannot be read as a safetensors"
    ):
        load_token_embeddings(path)


def test_row_norms_equal_whole_table_norms() -> None:
    table = torch.randn(5000, 40, generator=torch.Generator().manual_seed(1))
    table = table.to(torch.bfloat16)
    norms = table.float().norm(dim=-1)

    for idx in (0, 1234, 4999):
        norm, ratio = row_norm_ratio(table, idx)
        assert norm == float(norms[idx])
        assert ratio == float(norms[idx]) / float(norms.median())


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc"
)
def test_peak_memory_is_about_the_table(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    table = torch.randn(16384, 1024, generator=torch.Generator().manual_seed(2))
    save_file({KEY: table.to(torch.bfloat16)}, path)
    del table
    table_bytes = 16384 * 1024 * 2  # 32 MiB

    # Control: the measurement sees a peak of twice the table when two
    # table-sized buffers are filled (what copying out of a memory map costs
    # when the mapped pages count; whether they do depends on the page cache,
    # so the instrument is checked with anonymous memory).
    def two_tables() -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.ones(table_bytes // 2, dtype=torch.bfloat16),
            torch.ones(table_bytes // 2, dtype=torch.bfloat16),
        )

    assert _peak_growth(two_tables) > 1.7 * table_bytes

    growth = _peak_growth(lambda: load_token_embeddings(path))
    assert growth < 1.3 * table_bytes, growth / table_bytes

    # The pad-row check that follows a load (row norms) adds little on top.
    def load_and_check() -> torch.Tensor:
        table = load_token_embeddings(path)
        row_norm_ratio(table, 0)
        return table

    growth = _peak_growth(load_and_check)
    assert growth < 1.3 * table_bytes, growth / table_bytes
