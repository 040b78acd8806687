"""The target-LLM cards shipped in assets/ and the EuroLLM-9B arch."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml
from fairseq2.assets import get_asset_store
from fairseq2.data.tokenizers import (
    Tokenizer,
    TokenizerHubAccessor,
    get_tokenizer_family_name,
)
from fairseq2.models import ModelFamily, get_model_family_name
from fairseq2.models.hg import HgTokenizerConfig
from fairseq2.models.llama import (
    LLaMAConfig,
    LLaMATokenizerConfig,
    get_llama_model_hub,
)
from fairseq2.models.qwen import QwenConfig
from fairseq2.runtime.dependency import get_dependency_resolver

from speechmapper_plugin.llm import (
    CHAT_TEMPLATES,
    CHATML_TEMPLATE,
    EUROLLM_9B_ARCH,
    LLAMA3_1_TEMPLATE,
    chat_template_for_card,
    read_pad_token,
)

LLAMA_CARD = "speechmapper_llama3_1_8b_instruct"
EUROLLM_CARD = "speechmapper_eurollm_9b_instruct"


def eurollm_9b_parameter_count() -> int:
    """EuroLLM-9B's parameters from its published Hugging Face config."""
    hidden, layers, heads, kv_heads = 4096, 42, 32, 8
    intermediate, vocab = 12288, 128000
    head_dim = hidden // heads

    attention = 2 * hidden * hidden + 2 * hidden * kv_heads * head_dim  # q, o + k, v
    mlp = 3 * hidden * intermediate  # gate, up, down
    norms = 2 * hidden
    per_layer = attention + mlp + norms

    embeddings = 2 * vocab * hidden  # untied embed_tokens + lm_head

    return embeddings + layers * per_layer + hidden  # + final norm


def test_eurollm_9b_arch_has_the_published_shape() -> None:
    hub = get_llama_model_hub()

    assert EUROLLM_9B_ARCH in hub.get_archs()

    config = hub.get_arch_config(EUROLLM_9B_ARCH)
    model = hub.create_new_model(config, device=torch.device("cpu"), meta=True)

    assert next(model.parameters()).device.type == "meta"

    num_params = sum(p.numel() for p in model.parameters())
    assert num_params == eurollm_9b_parameter_count() == 9_152_319_488

    layer = model.decoder.layers[0]
    assert layer.ffn.gate_proj.weight.shape == (12288, 4096)
    assert layer.self_attn.k_proj.weight.shape == (1024, 4096)
    assert model.decoder_frontend.embed.weight.shape == (128000, 4096)
    assert model.final_proj.weight.shape == (128000, 4096)
    assert len(model.decoder.layers) == 42


def test_target_llm_cards_resolve_with_their_speechmapper_fields() -> None:
    store = get_asset_store()
    hub = get_llama_model_hub()

    llama = store.retrieve_card(LLAMA_CARD)
    assert llama.field("checkpoint").as_(str) == "hg://meta-llama/Llama-3.1-8B-Instruct"
    assert llama.field("tokenizer").as_(str) == "hg://meta-llama/Llama-3.1-8B-Instruct"
    assert llama.field("model_arch").as_(str) == "llama3_1_8b"  # from fairseq2's card
    assert read_pad_token(llama) == "<|finetune_right_pad_id|>"
    # Meta's own format by default (paper configs use the model's format).
    assert chat_template_for_card(LLAMA_CARD) is LLAMA3_1_TEMPLATE
    assert get_tokenizer_family_name(llama) == "llama"

    llama_config = hub.get_model_config(llama)
    assert (llama_config.model_dim, llama_config.vocab_size) == (4096, 128256)

    eurollm = store.retrieve_card(EUROLLM_CARD)
    assert (
        eurollm.field("checkpoint").as_(str) == "hg://utter-project/EuroLLM-9B-Instruct"
    )
    assert eurollm.field("model_arch").as_(str) == EUROLLM_9B_ARCH
    assert read_pad_token(eurollm) == "</s>"
    assert chat_template_for_card(eurollm) is CHATML_TEMPLATE
    assert get_tokenizer_family_name(eurollm) == "hg"

    eurollm_config = hub.get_model_config(eurollm)
    assert (eurollm_config.model_dim, eurollm_config.vocab_size) == (4096, 128000)


def test_tokenizer_configs_of_the_cards() -> None:
    llama_tokenizers = TokenizerHubAccessor("llama", Tokenizer, LLaMATokenizerConfig)()
    llama = llama_tokenizers.get_tokenizer_config(LLAMA_CARD)
    assert (llama.impl, llama.use_eot) == ("hg", True)

    hg_tokenizers = TokenizerHubAccessor("hg", Tokenizer, HgTokenizerConfig)()
    eurollm = hg_tokenizers.get_tokenizer_config(EUROLLM_CARD)
    assert (eurollm.bos_token, eurollm.eos_token, eurollm.pad_token) == (
        "<s>",
        "<|im_end|>",
        "</s>",
    )


CARDS_FILE = (
    Path(__file__).resolve().parents[1] / "assets" / "models" / "target_llms.yaml"
)


def header_model_dims(text: str) -> dict[str, int]:
    """The ``card  model dim`` table of the cards file's header comment."""
    dims = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = re.fullmatch(r"#\s+(speechmapper_\w+)\s+(\d+)", line.rstrip())
        if match:
            dims[match[1]] = int(match[2])
    return dims


def test_the_cards_header_states_each_cards_model_dim_truly() -> None:
    text = CARDS_FILE.read_text()
    stated = header_model_dims(text)
    cards = [doc["name"] for doc in yaml.safe_load_all(text) if doc]
    assert sorted(stated) == sorted(cards)

    store = get_asset_store()
    resolver = get_dependency_resolver()
    for name, dim in stated.items():
        card = store.retrieve_card(name)
        family = resolver.resolve(ModelFamily, key=get_model_family_name(card))  # type: ignore[type-abstract]
        config = family.get_model_config(card)
        assert isinstance(config, LLaMAConfig | QwenConfig), name
        assert config.model_dim == dim, name
        assert chat_template_for_card(card) in CHAT_TEMPLATES.values(), name
