"""Checkpoint conversion and loading of the SeamlessM4T-v2 speech encoder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from fairseq2.models import load_model

from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    convert_sm4t_speech_encoder_state_dict,
    create_sm4t_speech_encoder_model,
    read_speech_encoder_safetensors,
    select_speech_encoder_keys,
)
from speechmapper_plugin.models.sm4t_speech_encoder import (
    checkpoint as checkpoint_module,
)
from tests.support.cards import SessionCards
from tests.support.sm4t import (
    SM4T_SEED,
    TINY_DIMS,
    build_hf_model,
    hf_to_meta_state_dict,
)

CONFIG = SM4TSpeechEncoderConfig(
    **TINY_DIMS, output_layer=TINY_DIMS["num_encoder_layers"]
)

# What SeamlessM4T holds beyond the speech encoder, in HF names.
HF_SKIPPED = re.compile(
    r"^(shared|lm_head|text_encoder|text_decoder|t2u_model|vocoder)\.|"
    r"^speech_encoder\.(adapter|intermediate_ffn|inner_layer_norm)\."
)


@pytest.fixture(scope="module")
def hf_state() -> dict[str, torch.Tensor]:
    return dict(build_hf_model(SM4T_SEED).state_dict())


def model_keys() -> set[str]:
    return set(create_sm4t_speech_encoder_model(CONFIG).state_dict())


def test_hf_checkpoint_maps_onto_every_parameter(hf_state: dict[str, Any]) -> None:
    converted = convert_sm4t_speech_encoder_state_dict(dict(hf_state), CONFIG)

    assert set(converted) == model_keys()

    # Every HF key we did not load is one we skip on purpose.
    loaded = set(select_speech_encoder_keys(hf_state))
    skipped = set(hf_state) - loaded
    assert skipped and all(HF_SKIPPED.match(k) for k in skipped)
    assert not any(HF_SKIPPED.match(k) for k in loaded)


def test_swapped_layer_norm_names(hf_state: dict[str, Any]) -> None:
    """HF `encoder.layer_norm` is Meta's `inner_layer_norm`; HF's `inner_layer_norm` is not."""
    meta_state = hf_to_meta_state_dict(hf_state)

    from_hf = convert_sm4t_speech_encoder_state_dict(dict(hf_state), CONFIG)
    from_meta = convert_sm4t_speech_encoder_state_dict({"model": meta_state}, CONFIG)

    expected = hf_state["speech_encoder.encoder.layer_norm.weight"]
    assert torch.equal(from_hf["inner_layer_norm.weight"], expected)
    assert torch.equal(from_meta["inner_layer_norm.weight"], expected)
    assert not torch.equal(expected, hf_state["speech_encoder.inner_layer_norm.weight"])


def test_meta_and_hf_checkpoints_convert_to_the_same_tensors(
    hf_state: dict[str, Any],
) -> None:
    from_hf = convert_sm4t_speech_encoder_state_dict(dict(hf_state), CONFIG)
    from_meta = convert_sm4t_speech_encoder_state_dict(
        {"model": hf_to_meta_state_dict(hf_state)}, CONFIG
    )

    assert from_hf.keys() == from_meta.keys()
    for key, value in from_hf.items():
        assert torch.equal(value, from_meta[key]), key  # type: ignore[arg-type]


def test_native_checkpoint_round_trips() -> None:
    model = create_sm4t_speech_encoder_model(CONFIG)
    state = model.state_dict()

    converted = convert_sm4t_speech_encoder_state_dict({"model": dict(state)}, CONFIG)

    assert converted.keys() == state.keys()


@pytest.mark.parametrize(
    ("fmt", "bad_key"),
    [
        ("hf", "speech_encoder.encoder.layers.0.self_attn.pos_bias_u"),
        ("hf", "speech_encoder.encoder.pos_conv_embed.conv.weight"),
        ("meta", "speech_encoder.inner.layers.0.self_attn.sdpa.u_bias"),
        ("meta", "speech_encoder.inner.layer_norm.weight"),
        ("meta", "encoder.w2v_encoder.w2v_model.mask_emb"),
    ],
)
def test_unexpected_key_raises_naming_it(
    hf_state: dict[str, Any], fmt: str, bad_key: str
) -> None:
    state = dict(hf_state) if fmt == "hf" else hf_to_meta_state_dict(hf_state)
    state[bad_key] = torch.zeros(1)

    with pytest.raises(ValueError, match=re.escape(f"`{bad_key}`")):
        convert_sm4t_speech_encoder_state_dict({"model": state}, CONFIG)

    with pytest.raises(ValueError, match=re.escape(f"`{bad_key}`")):
        select_speech_encoder_keys(state)


def test_layer_count_mismatch_is_explained(hf_state: dict[str, Any]) -> None:
    config = SM4TSpeechEncoderConfig(
        **{**TINY_DIMS, "num_encoder_layers": 2}, output_layer=2
    )

    with pytest.raises(
        ValueError, match="has 4 Conformer blocks.*num_encoder_layers=2"
    ):
        convert_sm4t_speech_encoder_state_dict(dict(hf_state), config)


def test_checkpoint_without_speech_encoder_is_rejected() -> None:
    with pytest.raises(ValueError, match="no SeamlessM4T-v2 speech-encoder weights"):
        convert_sm4t_speech_encoder_state_dict(
            {"text_decoder.layers.0.ffn.inner_proj.weight": torch.zeros(1)}, CONFIG
        )


class RecordingSafeOpen:
    """Wraps ``safetensors.safe_open`` and records every tensor read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        handle = safetensors.safe_open(*args, **kwargs)
        recorder = self

        class Handle:
            def __enter__(self) -> Handle:
                handle.__enter__()
                return self

            def __exit__(self, *exc: object) -> None:
                handle.__exit__(*exc)

            def keys(self) -> list[str]:
                return list(handle.keys())

            def get_tensor(self, key: str) -> torch.Tensor:
                recorder.read.append(key)
                return handle.get_tensor(key)

        return Handle()


def test_load_model_reads_only_speech_encoder_tensors_from_safetensors(
    test_cards: SessionCards, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingSafeOpen()
    monkeypatch.setattr(checkpoint_module, "safe_open", recorder)

    model = load_model("test_sm4t_hf", device=torch.device("cpu"))

    assert isinstance(model, SM4TSpeechEncoder)

    # The checkpoint is sharded and holds the whole SeamlessM4Tv2Model...
    shards = sorted(test_cards.sm4t_hf_dir.glob("*.safetensors"))
    assert len(shards) > 1
    all_keys = set()
    for shard in shards:
        with safetensors.safe_open(shard, framework="pt") as f:
            all_keys.update(f.keys())
    assert any(
        k.startswith(("text_decoder.", "t2u_model.", "vocoder.")) for k in all_keys
    )

    # ...but exactly the speech-encoder tensors were read, each once.
    assert sorted(recorder.read) == sorted(select_speech_encoder_keys(all_keys))
    assert len(recorder.read) == len(model.state_dict())
    assert not any(HF_SKIPPED.match(k) for k in recorder.read)


def test_unexpected_safetensors_key_raises_before_any_tensor_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors = {
        "speech_encoder.encoder.layers.0.final_layer_norm.weight": torch.ones(4),
        "speech_encoder.encoder.layers.0.mystery.weight": torch.ones(4),
    }
    file = tmp_path / "model.safetensors"
    safetensors.torch.save_file(tensors, file)

    recorder = RecordingSafeOpen()
    monkeypatch.setattr(checkpoint_module, "safe_open", recorder)

    with pytest.raises(
        ValueError, match=re.escape("`speech_encoder.encoder.layers.0.mystery.weight`")
    ):
        read_speech_encoder_safetensors(tmp_path, [file])

    assert recorder.read == []


def test_load_model_memory_maps_meta_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``torch.load(mmap=True)`` maps the file: tensors the converter drops are never read."""
    calls: list[dict[str, Any]] = []
    real_load = torch.load

    def recording_load(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)

    model = load_model("test_sm4t_meta", device=torch.device("cpu"))

    assert isinstance(model, SM4TSpeechEncoder)
    assert calls and all(c.get("mmap") is True for c in calls)
