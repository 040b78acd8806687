"""The tiny test LLMs load through fairseq2 cards and match transformers exactly."""

from __future__ import annotations

import pytest
import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout

from tests.support.cards import SessionCards
from tests.support.llm import EMBED_DIM, training_sentences


@pytest.mark.parametrize("which", ["llama", "eurollm"])
def test_tiny_llm_logits_match_transformers(
    test_cards: SessionCards, which: str
) -> None:
    from transformers import LlamaForCausalLM

    llms = test_cards.llms
    card, directory = {
        "llama": (llms.llama_card, llms.llama_dir),
        "eurollm": (llms.eurollm_card, llms.eurollm_dir),
    }[which]

    ours = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(ours, TransformerLM)
    ours.eval()

    reference = LlamaForCausalLM.from_pretrained(
        directory, torch_dtype=torch.float32
    ).eval()

    vocab = reference.config.vocab_size
    assert ours.decoder_frontend.embed.weight.shape == (vocab, EMBED_DIM)

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, 17), generator=generator)

    with torch.no_grad():
        expected = reference(ids).logits
        actual = ours(ids, BatchLayout.of(ids))

    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("which", ["llama", "eurollm"])
def test_tiny_tokenizers_load_through_cards_like_transformers(
    test_cards: SessionCards, which: str
) -> None:
    from transformers import AutoTokenizer

    llms = test_cards.llms
    card, directory = {
        "llama": (llms.llama_card, llms.llama_dir),
        "eurollm": (llms.eurollm_card, llms.eurollm_dir),
    }[which]

    ours = load_tokenizer(card)
    reference = AutoTokenizer.from_pretrained(directory)

    encoder = ours.create_raw_encoder()
    for text in training_sentences(20, seed=7):
        assert encoder(text).tolist() == reference.encode(
            text, add_special_tokens=False
        )

    # Simple transcripts take a handful of tokens.
    assert len(encoder("The old dog saw a bird near the river.")) <= 12


def test_tokenizers_know_the_real_special_tokens(test_cards: SessionCards) -> None:
    llama = load_tokenizer(test_cards.llms.llama_card).vocab_info
    eurollm = load_tokenizer(test_cards.llms.eurollm_card).vocab_info

    # Llama 3 style: regular tokens first, then the specials (like ids 128000+).
    assert llama.bos_idx == llama.size
    assert llama.eos_idx is not None and llama.eos_idx > llama.size  # <|eot_id|>
    assert llama.pad_idx is not None and llama.pad_idx > llama.size

    # EuroLLM: bos 1, pad 2, eos 4.
    assert (eurollm.unk_idx, eurollm.bos_idx, eurollm.pad_idx, eurollm.eos_idx) == (
        0,
        1,
        2,
        4,
    )
