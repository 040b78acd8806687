"""The one reader of selected checkpoint tensors (``speechmapper_plugin.checkpoints``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechmapper_plugin import checkpoints
from speechmapper_plugin.checkpoints import (
    SAFETENSORS_DTYPES,
    CheckpointReadError,
    keys_by_shard,
    read_checkpoint_tensors,
    read_safetensors_headers,
    read_weight_map,
)


def _tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "enc.a": torch.randn(3, 4),
        "enc.b": torch.randn(5).to(torch.bfloat16),
        "dec.c": torch.randn(2, 2),
        "dec.d": torch.arange(6, dtype=torch.int64),
    }


def _sharded(directory: Path, tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """Two shards and an HF index, as ``save_pretrained`` writes them."""
    shards = {"enc.a": "s1", "dec.c": "s1", "enc.b": "s2", "dec.d": "s2"}
    weight_map = {k: f"model-{shards[k]}.safetensors" for k in tensors}
    for name in set(weight_map.values()):
        save_file(
            {k: v for k, v in tensors.items() if weight_map[k] == name},
            directory / name,
        )
    (directory / checkpoints.SAFETENSORS_INDEX).write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return weight_map


def _encoder(keys: object) -> list[str]:
    return [k for k in keys if k.startswith("enc.")]  # type: ignore[attr-defined]


def test_selected_tensors_equal_safetensors_own_reader(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file(tensors, tmp_path / "model.safetensors")

    got = read_checkpoint_tensors(tmp_path / "model.safetensors", _encoder)

    reference = load_file(tmp_path / "model.safetensors")
    assert sorted(got) == ["enc.a", "enc.b"]
    for key, value in got.items():
        assert value.dtype == reference[key].dtype
        assert torch.equal(value, reference[key])


def test_index_opens_only_the_shards_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors = _tensors()
    weight_map = _sharded(tmp_path, tensors)

    read: list[tuple[str, list[str]]] = []
    real = checkpoints.read_safetensors_file

    def recording(file: Path, keys: list[str]) -> dict[str, torch.Tensor]:
        read.append((file.name, list(keys)))
        return real(file, keys)

    monkeypatch.setattr(checkpoints, "read_safetensors_file", recording)

    # Only dec.d's shard is needed: the other one may as well be gone.
    (tmp_path / weight_map["dec.c"]).unlink()
    got = read_checkpoint_tensors(tmp_path, lambda keys: ["dec.d"])

    assert read == [(weight_map["dec.d"], ["dec.d"])]
    assert torch.equal(got["dec.d"], tensors["dec.d"])

    with pytest.raises(FileNotFoundError, match=weight_map["dec.c"]):
        read_checkpoint_tensors(tmp_path / checkpoints.SAFETENSORS_INDEX, _encoder)


def test_directory_without_index_reads_its_shards(tmp_path: Path) -> None:
    tensors = _tensors()
    _sharded(tmp_path, tensors)
    (tmp_path / checkpoints.SAFETENSORS_INDEX).unlink()

    got = read_checkpoint_tensors(tmp_path, _encoder)

    assert sorted(got) == ["enc.a", "enc.b"]
    assert torch.equal(got["enc.b"], tensors["enc.b"])


def test_torch_files_plain_and_nested(tmp_path: Path) -> None:
    tensors = _tensors()
    torch.save(tensors, tmp_path / "plain.pt")
    torch.save({"model": tensors}, tmp_path / "nested.bin")

    for name in ("plain.pt", "nested.bin"):
        got = read_checkpoint_tensors(tmp_path / name, _encoder)
        assert sorted(got) == ["enc.a", "enc.b"]
        assert torch.equal(got["enc.a"], tensors["enc.a"])


def test_headers_give_shape_and_dtype_without_reading(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file(tensors, tmp_path / "model.safetensors")

    headers = read_safetensors_headers([tmp_path / "model.safetensors"])

    for key, value in tensors.items():
        assert headers[key].shape == tuple(value.shape)
        assert headers[key].dtype == value.dtype


def test_the_dtype_map_matches_safetensors(tmp_path: Path) -> None:
    """Every name of the map round-trips through safetensors' own writer."""
    tensors = {
        name: torch.zeros(2, dtype=dtype) for name, dtype in SAFETENSORS_DTYPES.items()
    }
    save_file(tensors, tmp_path / "all.safetensors")

    header_len = int.from_bytes(
        (tmp_path / "all.safetensors").read_bytes()[:8], "little"
    )
    header = json.loads((tmp_path / "all.safetensors").read_bytes()[8 : 8 + header_len])

    assert {k: header[k]["dtype"] for k in tensors} == {k: k for k in tensors}


def test_keys_by_shard(tmp_path: Path) -> None:
    weight_map = _sharded(tmp_path, _tensors())

    assert read_weight_map(tmp_path / checkpoints.SAFETENSORS_INDEX) == weight_map
    assert keys_by_shard(weight_map, _encoder) == {
        "model-s1.safetensors": ["enc.a"],
        "model-s2.safetensors": ["enc.b"],
    }


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    tensors = _tensors()
    save_file(tensors, tmp_path / "model.safetensors")

    with pytest.raises(CheckpointReadError, match="no tensor `enc.zzz`"):
        read_checkpoint_tensors(tmp_path / "model.safetensors", lambda _: ["enc.zzz"])

    (tmp_path / "bad.index.json").write_text('{"weights": {}}')
    with pytest.raises(CheckpointReadError, match="not a valid checkpoint index"):
        read_checkpoint_tensors(tmp_path / "bad.index.json", _encoder)

    (tmp_path / "list.index.json").write_text('{"weight_map": []}')
    with pytest.raises(CheckpointReadError, match="is not an object"):
        read_weight_map(tmp_path / "list.index.json")

    dup = tmp_path / "dup"
    dup.mkdir()
    save_file({"enc.a": tensors["enc.a"]}, dup / "one.safetensors")
    save_file({"enc.a": tensors["enc.a"]}, dup / "two.safetensors")
    with pytest.raises(CheckpointReadError, match="`enc.a` is in both"):
        read_checkpoint_tensors(dup, _encoder)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointReadError, match="no .*safetensors"):
        read_checkpoint_tensors(empty, _encoder)

    (tmp_path / "weights.npz").write_bytes(b"PK")
    with pytest.raises(CheckpointReadError, match="unsupported checkpoint format"):
        read_checkpoint_tensors(tmp_path / "weights.npz", _encoder)

    torch.save({"enc.a": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(CheckpointReadError, match="not a tensor"):
        read_checkpoint_tensors(tmp_path / "list.pt", _encoder)

    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-8])
    with pytest.raises(CheckpointReadError, match="safetensors"):
        read_checkpoint_tensors(tmp_path / "cut.safetensors", _encoder)
