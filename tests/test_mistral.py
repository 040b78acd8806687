"""Mistral-7B-Instruct-v0.3 through fairseq2's ``llama`` family.

The tiny card ``test_mistral`` holds a transformers ``MistralForCausalLM``
shaped like v0.3 (no sliding window, RoPE base 1e6); fairseq2 must give the
same logits, which is what justifies building v0.3 with the ``llama`` family.
"""

from __future__ import annotations

import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.llama import LLaMAConfig
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from fairseq2.runtime.config_registry import get_config
from fairseq2.runtime.dependency import get_dependency_resolver

from speechmapper_plugin.llm import read_pad_token, retrieve_llm_card, token_to_id
from tests.support.cards import SessionCards


def test_llama_family_matches_transformers_mistral(test_cards: SessionCards) -> None:
    from transformers import MistralForCausalLM

    hf = MistralForCausalLM.from_pretrained(test_cards.mistral_dir).eval()
    ours = load_model("test_mistral", device=torch.device("cpu"))
    assert isinstance(ours, TransformerLM)
    ours.eval()

    ids = torch.randint(3, 200, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(ids).logits
        logits = ours(ids, BatchLayout.of(ids))

    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_the_real_v0_3_card_and_pad_token(test_cards: SessionCards) -> None:
    card = retrieve_llm_card("speechmapper_mistral_7b_instruct_v0_3")
    assert read_pad_token(card) == "<unk>"
    assert card.field("speechmapper_chat_template").as_(str) == "mistral"

    config = get_config(get_dependency_resolver(), LLaMAConfig, "mistral_7b_v0_3")
    assert (config.vocab_size, config.max_seq_len, config.rope_theta) == (
        32_768,
        32_768,
        1_000_000.0,
    )
    # fairseq2 derives the FFN width; it must land on v0.3's 14336.
    inner = int(config.ffn_inner_dim * 2 / 3 * config.ffn_inner_dim_multiplier)
    multiple = config.ffn_inner_dim_multiple_of
    assert multiple * ((inner + multiple - 1) // multiple) == 14_336

    tiny = load_tokenizer("test_mistral")
    assert (
        token_to_id(tiny, read_pad_token(retrieve_llm_card("test_mistral")) or "") == 0
    )
