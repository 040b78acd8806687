"""The ``sm4t_speech_encoder`` family: registration, archs, config, cards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from fairseq2.assets import AssetStore
from fairseq2.nn import BatchLayout
from fairseq2.runtime.dependency import get_dependency_resolver

from speechmapper_plugin.models.sm4t_speech_encoder import (
    GatheredShawRelativePositionSDPA,
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    create_sm4t_speech_encoder_model,
    get_sm4t_speech_encoder_hub,
)

CARDS = {
    "seamless_m4t_v2_large_speech_encoder": "hg://facebook/seamless-m4t-v2-large",
    "seamless_m4t_v2_large_speech_encoder_meta": "https://huggingface.co/facebook/seamless-m4t-v2-large/resolve/main/seamlessM4T_v2_large.pt",
}


def test_large_arch_is_the_seamless_m4t_v2_encoder() -> None:
    config = get_sm4t_speech_encoder_hub().get_arch_config("large")

    assert (config.model_dim, config.num_encoder_layers) == (1024, 24)
    assert (config.num_encoder_attn_heads, config.ffn_inner_dim) == (16, 4096)
    assert config.depthwise_conv_kernel_size == 31
    assert (config.max_lhs_rel_pos, config.max_rhs_rel_pos) == (64, 8)
    assert (config.output_layer, config.output_layer_norm) == (24, True)

    with torch.device("meta"):
        model = create_sm4t_speech_encoder_model(config)

    # transformers' speech encoder through layer 24 + its LayerNorm.
    num_params = sum(p.numel() for p in model.parameters())
    assert round(num_params / 1e6, 2) == 580.49

    block = model.encoder.layers[0]
    assert isinstance(block.self_attn.sdpa, GatheredShawRelativePositionSDPA)
    assert block.self_attn.sdpa.rel_k_embed.weight.shape == (73, 64)
    assert block.conv.causal_depthwise_conv and block.conv.layer_norm is not None
    assert block.conv.batch_norm is None


def test_tiny_arch_is_registered() -> None:
    config = get_sm4t_speech_encoder_hub().get_arch_config("tiny")

    assert config.model_dim == 64 and config.output_layer == config.num_encoder_layers
    assert not config.validate().has_error()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output_layer": 0}, "`output_layer` is 1-based"),
        ({"output_layer": 25}, r"must be in \[1, 24\]"),
        ({"num_encoder_attn_heads": 5}, "must be divisible"),
        ({"shaw_sdpa": "flash"}, "`shaw_sdpa` must be one of"),
        ({"max_lhs_rel_pos": -1}, "must be non-negative"),
    ],
)
def test_invalid_configs_are_reported(
    overrides: dict[str, object], message: str
) -> None:
    result = SM4TSpeechEncoderConfig(**overrides).validate()  # type: ignore[arg-type]

    assert result.has_error()
    assert re.search(message, str(result)), str(result)


def test_layers_after_the_requested_one_are_not_run() -> None:
    config = get_sm4t_speech_encoder_hub().get_arch_config("tiny")
    model = create_sm4t_speech_encoder_model(config).eval()

    calls: list[int] = []
    for i, block in enumerate(model.encoder.layers):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))

    fbank = torch.randn(1, 100, 80)
    with torch.no_grad():
        out, layout = model(fbank, BatchLayout.of(fbank), layer=2)

    assert calls == [0, 1]
    assert out.shape == (1, 50, 64) and list(layout.seq_lens) == [50]

    with pytest.raises(ValueError, match=r"1-based and must be in \[1, 4\]"):
        model(fbank, BatchLayout.of(fbank), layer=5)

    with pytest.raises(ValueError, match="fbanks of shape"):
        model(torch.randn(1, 100, 40), BatchLayout((1, 100), None), layer=1)


def test_asset_cards_are_registered_from_the_package() -> None:
    store = get_dependency_resolver().resolve(AssetStore)

    for name, checkpoint in CARDS.items():
        card = store.retrieve_card(name)
        assert card.field("model_family").as_(str) == "sm4t_speech_encoder"
        assert card.field("model_arch").as_(str) == "large"
        assert card.field("checkpoint").as_(str) == checkpoint

        config = get_sm4t_speech_encoder_hub().get_model_config(name)
        assert config.num_encoder_layers == 24


def test_card_names_do_not_collide_with_fairseq2(repo_root: Path) -> None:
    import fairseq2

    bundled = Path(fairseq2.__file__).parent / "assets" / "cards"
    names = {
        doc["name"]
        for file in bundled.rglob("*.yaml")
        for doc in yaml.safe_load_all(file.read_text())
        if doc and "name" in doc
    }

    ours = {
        doc["name"]
        for doc in yaml.safe_load_all(
            (repo_root / "assets" / "models" / "seamless_m4t_v2.yaml").read_text()
        )
    }

    assert ours == set(CARDS)
    assert not ours & names


def test_model_class_is_what_the_hub_returns() -> None:
    config = get_sm4t_speech_encoder_hub().get_arch_config("tiny")

    model = get_sm4t_speech_encoder_hub().create_new_model(
        config, device=torch.device("cpu")
    )

    assert isinstance(model, SM4TSpeechEncoder)
