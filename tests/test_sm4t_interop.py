"""Checkpoint conversion and loading of the SeamlessM4T-v2 speech encoder."""

from __future__ import annotations

import argparse
import pickle
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
import safetensors.torch
import torch
from fairseq2.assets import AssetCardError
from fairseq2.model_checkpoint import CorruptModelCheckpointError
from fairseq2.models import load_model

from speechmapper_plugin import checkpoints as checkpoints_module
from speechmapper_plugin.checkpoints import read_checkpoint_tensors
from speechmapper_plugin.models.sm4t_speech_encoder import (
    FAIRSEQ1_FORMAT,
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    convert_sm4t_speech_encoder_state_dict,
    create_sm4t_speech_encoder_model,
    detect_checkpoint_format,
    select_speech_encoder_keys,
)
from tests.support.cards import SessionCards
from tests.support.sm4t import (
    SM4T_SEED,
    TINY_DIMS,
    build_hf_model,
    hf_to_meta_state_dict,
)
from tests.support.sm4t_fairseq1 import fairseq1_checkpoint, hf_to_fairseq1_state_dict

CONFIG = SM4TSpeechEncoderConfig(
    **TINY_DIMS, output_layer=TINY_DIMS["num_encoder_layers"]
)

ADAPTOR_CONFIG = replace(CONFIG, length_adaptor=True)

# What SeamlessM4T holds beyond the speech encoder, in HF names.
HF_SKIPPED = re.compile(
    r"^(shared|lm_head|text_encoder|text_decoder|t2u_model|vocoder)\."
)

# The speech encoder after its Conformer: read, but loaded only with the adaptor.
HF_ADAPTOR = re.compile(
    r"^speech_encoder\.(adapter|intermediate_ffn|inner_layer_norm)\."
)


@pytest.fixture(scope="module")
def hf_state() -> dict[str, torch.Tensor]:
    return dict(build_hf_model(SM4T_SEED).state_dict())


def model_keys(config: SM4TSpeechEncoderConfig = CONFIG) -> set[str]:
    return set(create_sm4t_speech_encoder_model(config).state_dict())


def test_hf_checkpoint_maps_onto_every_parameter(hf_state: dict[str, Any]) -> None:
    converted = convert_sm4t_speech_encoder_state_dict(dict(hf_state), CONFIG)

    assert set(converted) == model_keys()

    # Every HF key we did not load is one we skip on purpose.
    loaded = set(select_speech_encoder_keys(hf_state))
    skipped = set(hf_state) - loaded
    assert skipped and all(HF_SKIPPED.match(k) for k in skipped)
    assert not any(HF_SKIPPED.match(k) for k in loaded)

    # The adaptor's tensors are read (the config is not known then) and
    # loaded only into a model with the adaptor.
    adaptor_keys = {k for k in loaded if HF_ADAPTOR.match(k)}
    assert adaptor_keys
    with_adaptor = convert_sm4t_speech_encoder_state_dict(
        dict(hf_state), ADAPTOR_CONFIG
    )
    assert set(with_adaptor) == model_keys(ADAPTOR_CONFIG)
    assert len(with_adaptor) == len(loaded) == len(converted) + len(adaptor_keys)


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


class RecordingReader:
    """Wraps the one function that reads safetensors tensor data and records every key read."""

    def __init__(self) -> None:
        self.read: list[str] = []
        self._read_file = checkpoints_module.read_safetensors_file

    def __call__(self, file: Path, keys: list[str]) -> dict[str, torch.Tensor]:
        self.read.extend(keys)
        return self._read_file(file, keys)


def test_load_model_reads_only_speech_encoder_tensors_from_safetensors(
    test_cards: SessionCards, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = RecordingReader()
    monkeypatch.setattr(checkpoints_module, "read_safetensors_file", recorder)

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

    # ...but exactly the speech-encoder tensors were read (the length adaptor's
    # included: the key selection cannot know the config), each once.
    assert sorted(recorder.read) == sorted(select_speech_encoder_keys(all_keys))
    assert len(recorder.read) == len(model_keys(ADAPTOR_CONFIG))
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

    recorder = RecordingReader()
    monkeypatch.setattr(checkpoints_module, "read_safetensors_file", recorder)

    with pytest.raises(
        ValueError, match=re.escape("`speech_encoder.encoder.layers.0.mystery.weight`")
    ):
        read_checkpoint_tensors(file, select_speech_encoder_keys)

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


# Meta's fairseq1 layout (what `seamlessM4T_v2_large.pt` holds, per
# seamless_communication's `models/unity/loader.py`).


@pytest.mark.parametrize("attention", ["fairseq", "espnet"])
def test_fairseq1_checkpoint_converts_to_the_hf_tensors(
    hf_state: dict[str, Any], attention: Literal["fairseq", "espnet"]
) -> None:
    state = hf_to_fairseq1_state_dict(hf_state, attention)
    checkpoint = fairseq1_checkpoint(state)

    assert detect_checkpoint_format(state) is FAIRSEQ1_FORMAT

    from_hf = convert_sm4t_speech_encoder_state_dict(dict(hf_state), CONFIG)
    from_fairseq1 = convert_sm4t_speech_encoder_state_dict(checkpoint, CONFIG)

    assert from_fairseq1.keys() == from_hf.keys() == model_keys()
    for key, value in from_hf.items():
        assert torch.equal(value, from_fairseq1[key]), key  # type: ignore[arg-type]

    # The two LayerNorms called `layer_norm` in fairseq1: after the Conformer
    # (kept) and after the adaptor (`adaptor.out_ln`, only with the adaptor).
    assert torch.equal(
        from_fairseq1["inner_layer_norm.weight"],  # type: ignore[arg-type]
        state["encoder.w2v_encoder.w2v_model.encoder.layer_norm.weight"],
    )
    assert "length_adaptor.layer_norm.weight" not in from_fairseq1
    loaded = set(select_speech_encoder_keys(state))
    assert "encoder.w2v_encoder.w2v_model.mask_emb" not in loaded
    assert len(loaded) == len(model_keys(ADAPTOR_CONFIG))


@pytest.mark.parametrize(
    "bad_key",
    [
        # SeamlessM4T v1 (Transformer-XL attention, BatchNorm convolution)
        "encoder.w2v_encoder.w2v_model.encoder.layers.0.self_attn.pos_bias_u",
        "encoder.w2v_encoder.w2v_model.encoder.layers.0.self_attn.linear_pos.weight",
        "encoder.w2v_encoder.w2v_model.encoder.layers.0.conv_module.batch_norm.weight",
        "encoder.w2v_encoder.w2v_model.encoder.pos_conv.0.weight",
        "encoder.w2v_encoder.proj.weight",
    ],
)
def test_unexpected_fairseq1_key_raises_naming_it(
    hf_state: dict[str, Any], bad_key: str
) -> None:
    state = hf_to_fairseq1_state_dict(hf_state)
    state[bad_key] = torch.zeros(1)

    with pytest.raises(ValueError, match=re.escape(f"`{bad_key}`")):
        convert_sm4t_speech_encoder_state_dict({"model": state}, CONFIG)


def test_fairseq1_file_is_a_full_pickle(test_cards: SessionCards) -> None:
    """The test file, like the real one, is refused by the restricted unpickler."""
    file = test_cards.root / "sm4t_fairseq1" / "seamlessM4T_v2_large.pt"

    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(file, weights_only=True)

    checkpoint = torch.load(file, weights_only=False)
    assert isinstance(checkpoint["args"], argparse.Namespace)
    assert "cfg" in checkpoint and "optimizer_history" in checkpoint


def test_load_model_loads_fairseq1_file_through_unrestricted_card() -> None:
    model = load_model("test_sm4t_fairseq1", device=torch.device("cpu"))
    reference = load_model("test_sm4t_hf", device=torch.device("cpu"))

    assert isinstance(model, SM4TSpeechEncoder)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_restricted_card_explains_how_to_load_a_fairseq1_file() -> None:
    with pytest.raises(AssetCardError) as info:
        load_model("test_sm4t_fairseq1_restricted", device=torch.device("cpu"))

    message = str(info.value.__cause__)
    assert "restrict: false" in message
    assert "seamless_m4t_v2_large_speech_encoder" in message


def test_unpickling_a_missing_module_is_explained(tmp_path: Path) -> None:
    """A fairseq1 file may pickle objects of modules that are not installed."""
    module = tmp_path / "fairseq1_cfg_stub.py"
    module.write_text("class Cfg:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import fairseq1_cfg_stub

        state = hf_to_fairseq1_state_dict(dict(build_hf_model(SM4T_SEED).state_dict()))
        file = tmp_path / "model.pt"
        torch.save({"model": state, "cfg": fairseq1_cfg_stub.Cfg()}, file)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fairseq1_cfg_stub", None)

    from speechmapper_plugin.models.sm4t_speech_encoder import (
        get_sm4t_speech_encoder_hub,
    )

    with pytest.raises(CorruptModelCheckpointError, match="`fairseq1_cfg_stub`"):
        get_sm4t_speech_encoder_hub().load_custom_model(
            file, CONFIG, device=torch.device("cpu"), restrict=False
        )
