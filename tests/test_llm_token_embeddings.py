"""Embedding-only loading from every checkpoint layout, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fairseq2.assets import AssetCard
from fairseq2.models import load_model
from safetensors.torch import save_file
from torch import Tensor

from speechmapper_plugin.llm import (
    TokenEmbeddingLoadError,
    load_token_embeddings,
    locate_token_embeddings,
)
from tests.support.cards import SessionCards
from tests.support.llm import build_hf_llama


@pytest.fixture(scope="module")
def hf_table(test_cards: SessionCards) -> Tensor:
    from safetensors import safe_open

    with safe_open(test_cards.llms.llama_dir / "model.safetensors", "pt") as f:
        return f.get_tensor("model.embed_tokens.weight")


def test_hf_directory_card_name_card_and_uri(
    test_cards: SessionCards, hf_table: Tensor
) -> None:
    llms = test_cards.llms

    for source in (
        llms.llama_dir,
        str(llms.llama_dir),
        llms.llama_dir / "model.safetensors",
        llms.llama_card,
        AssetCard("inline", {"checkpoint": str(llms.llama_dir)}),
        llms.llama_dir.as_uri(),
    ):
        table = load_token_embeddings(source)  # type: ignore[arg-type]
        assert torch.equal(table, hf_table), source

    assert hf_table.shape[1] == test_cards.llms.embed_dim


def test_sharded_hf_directory_reads_only_the_embedding_shard(tmp_path: Path) -> None:
    model = build_hf_llama(300, seed=3, rope_theta=10_000.0, bos=1, eos=2)
    model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="60KB")

    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    embed_shard = index["weight_map"]["model.embed_tokens.weight"]
    assert len(shards) >= 3

    # Every other shard disappears: any attempt to read a decoder tensor fails.
    for shard in shards - {embed_shard}:
        (tmp_path / shard).unlink()

    source = locate_token_embeddings(tmp_path)
    assert source.file.name == embed_shard
    assert source.shape == (300, 64)

    table = load_token_embeddings(tmp_path, dtype=torch.bfloat16)
    assert table.dtype == torch.bfloat16
    torch.testing.assert_close(
        table, model.model.embed_tokens.weight.detach().to(torch.bfloat16)
    )


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    "model.embed_tokens.weight": "model-00001-of-00002.safetensors"
                }
            }
        )
    )
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        load_token_embeddings(tmp_path)


@pytest.mark.parametrize(
    ("key", "nest", "name"),
    [
        ("model.embed_tokens.weight", False, "pytorch_model.bin"),
        ("decoder_frontend.embed.weight", False, "model.pt"),
        ("decoder_frontend.embed.weight", True, "legacy.pt"),  # fairseq2 {"model": ...}
        ("tok_embeddings.weight", False, "consolidated.00.pth"),  # Meta reference
    ],
)
def test_torch_files(tmp_path: Path, key: str, nest: bool, name: str) -> None:
    table = torch.randn(50, 8)
    state: dict[str, object] = {
        key: table,
        "layers.0.attention.wq.weight": torch.randn(8, 8),
    }
    path = tmp_path / name
    torch.save({"model": state} if nest else state, path)

    torch.testing.assert_close(load_token_embeddings(path), table, rtol=0, atol=0)

    # The directory forms: a Meta reference dir, a dir with one .bin/.pt.
    torch.testing.assert_close(load_token_embeddings(tmp_path), table, rtol=0, atol=0)


def test_fairseq2_checkpoint_directory(
    test_cards: SessionCards, tmp_path: Path, hf_table: Tensor
) -> None:
    model = load_model(test_cards.llms.llama_card, device=torch.device("cpu"))
    step_dir = tmp_path / "checkpoints" / "step_1000"
    shard = step_dir / "model" / "pp_00" / "tp_00" / "sdp_00.pt"
    shard.parent.mkdir(parents=True)
    torch.save(model.state_dict(), shard)

    for source in (step_dir, step_dir / "model"):
        torch.testing.assert_close(
            load_token_embeddings(source), hf_table, rtol=0, atol=0
        )

    # Tensor-parallel shards split the table: refuse, do not guess.
    (step_dir / "model" / "pp_00" / "tp_01").mkdir()
    with pytest.raises(TokenEmbeddingLoadError, match="sharded fairseq2 checkpoint"):
        load_token_embeddings(step_dir)


def test_explicit_key(tmp_path: Path) -> None:
    table = torch.randn(10, 4)
    save_file({"transformer.wte.weight": table}, tmp_path / "gpt.safetensors")

    loaded = load_token_embeddings(
        tmp_path / "gpt.safetensors", key="transformer.wte.weight"
    )
    torch.testing.assert_close(loaded, table, rtol=0, atol=0)


def test_no_embedding_key_lists_the_keys_seen(tmp_path: Path) -> None:
    save_file(
        {"encoder.weight": torch.zeros(2, 2), "head.weight": torch.zeros(2, 2)},
        tmp_path / "model.safetensors",
    )
    with pytest.raises(TokenEmbeddingLoadError, match=r"encoder\.weight, head\.weight"):
        load_token_embeddings(tmp_path)

    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "x.pt")
    with pytest.raises(
        TokenEmbeddingLoadError, match=r"found the keys encoder\.weight"
    ):
        load_token_embeddings(tmp_path / "x.pt")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_token_embeddings(tmp_path / "nowhere" / "model.safetensors")

    card = AssetCard("ghost", {"checkpoint": str(tmp_path / "ghost")})
    with pytest.raises(FileNotFoundError, match="ghost"):
        load_token_embeddings(card)


def test_unsupported_and_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "weights.npz").write_bytes(b"PK")
    with pytest.raises(
        TokenEmbeddingLoadError, match="unsupported checkpoint format '.npz'"
    ):
        load_token_embeddings(tmp_path / "weights.npz")

    (tmp_path / "broken.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"
    )
    with pytest.raises(TokenEmbeddingLoadError, match="safetensors"):
        load_token_embeddings(tmp_path / "broken.safetensors")

    (tmp_path / "broken.pt").write_bytes(b"definitely not a zip")
    with pytest.raises(TokenEmbeddingLoadError, match="PyTorch checkpoint"):
        load_token_embeddings(tmp_path / "broken.pt")

    # The pre-1.6 (non-zip) format cannot be memory-mapped.
    torch.save(
        {"tok_embeddings.weight": torch.zeros(2, 2)},
        tmp_path / "old.pth",
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(TokenEmbeddingLoadError, match="memory-mapped"):
        load_token_embeddings(tmp_path / "old.pth")

    save_file(
        {"model.embed_tokens.weight": torch.zeros(2, 2, 2)}, tmp_path / "3d.safetensors"
    )
    with pytest.raises(TokenEmbeddingLoadError, match="2-D"):
        load_token_embeddings(tmp_path / "3d.safetensors")


def test_unsupported_directory_lists_its_contents(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(TokenEmbeddingLoadError, match=r"README\.md"):
        load_token_embeddings(tmp_path)


def test_unknown_card_name() -> None:
    from speechmapper_plugin.llm import TargetLLMCardError

    with pytest.raises(TargetLLMCardError, match="No asset card named 'no_such_llm'"):
        load_token_embeddings("no_such_llm")


def test_card_without_checkpoint() -> None:
    from speechmapper_plugin.llm import TargetLLMCardError

    with pytest.raises(TargetLLMCardError, match="no `checkpoint` field"):
        load_token_embeddings("llama3_1_8b_instruct")  # fairseq2's gated card


def test_copy_leaves_the_checkpoint_alone(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    """The table is an independent copy: writing to it never touches the file."""
    copy = tmp_path / "copy"
    shutil.copytree(test_cards.llms.llama_dir, copy)

    table = load_token_embeddings(copy)
    table.zero_()

    assert load_token_embeddings(copy).abs().sum() > 0
