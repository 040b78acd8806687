"""The target LLM as stage 1 sees it: tokenizer, table, pad token, checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fairseq2.assets import AssetCard, get_asset_store
from safetensors.torch import save_file

from speechmapper_plugin.llm import (
    TargetLLMCardError,
    TargetLLMEmbeddings,
    load_target_llm_embeddings,
    load_token_embeddings,
    resolve_target_tokens,
    token_to_id,
)
from tests.support.cards import SessionCards
from tests.support.llm import hf_tokenizer_size

TRANSCRIPT = "The old dog saw a bird near the river."


def derived_card(base: str, **fields: object) -> AssetCard:
    """A card that inherits ``base`` from the store and overrides ``fields``."""
    return AssetCard(
        f"{base}_variant", fields, base=get_asset_store().retrieve_card(base)
    )


def test_llama_embeddings(test_cards: SessionCards) -> None:
    from transformers import AutoTokenizer

    llms = test_cards.llms
    target = load_target_llm_embeddings(llms.llama_card)
    reference = AutoTokenizer.from_pretrained(llms.llama_dir)

    assert target.card_name == llms.llama_card
    assert target.embed_dim == llms.embed_dim == 64
    assert target.pad_token == "<|finetune_right_pad_id|>"
    assert target.pad_idx == reference.convert_tokens_to_ids(
        "<|finetune_right_pad_id|>"
    )
    assert torch.equal(target.table, load_token_embeddings(llms.llama_dir))
    assert target.embeddings is target.table
    assert torch.equal(target.pad_embedding, target.table[target.pad_idx])

    # Like Llama 3 (128000 regular tokens, 128256 rows), the tokenizer's
    # `vocab_info.size` counts fewer tokens than the table has rows: fine.
    assert target.tokenizer.vocab_info.size < target.num_embeddings

    half = target.to(dtype=torch.float16)
    assert half.table.dtype == torch.float16 and half.pad_idx == target.pad_idx

    ids = target.encode(TRANSCRIPT)
    assert ids.dtype == torch.int64
    assert ids.tolist() == reference.encode(TRANSCRIPT, add_special_tokens=False)
    assert len(ids) <= 12  # a handful of tokens
    assert torch.equal(target.embed(ids), target.table[ids])

    # Special tokens (pad, end of turn, BOS) vanish from decoded text.
    eot = reference.convert_tokens_to_ids("<|eot_id|>")
    padded = [target.tokenizer.vocab_info.bos_idx, *ids.tolist(), eot, target.pad_idx]
    assert target.decode(padded) == TRANSCRIPT
    assert target.decode(torch.tensor(padded)) == TRANSCRIPT


def test_eurollm_embeddings(test_cards: SessionCards) -> None:
    target = load_target_llm_embeddings(
        test_cards.llms.eurollm_card, dtype=torch.bfloat16
    )

    assert (target.pad_token, target.pad_idx) == ("</s>", 2)
    assert target.table.dtype == torch.bfloat16
    assert target.table.shape == (target.num_embeddings, 64)
    assert target.num_embeddings >= len(target.tokenizer.raw)  # type: ignore[attr-defined]

    ids = target.encode(TRANSCRIPT)
    assert target.decode([1, *ids.tolist(), 4, 2, 2]) == TRANSCRIPT

    # Characters outside the learned pieces go through byte fallback and back.
    assert target.decode(target.encode("Zoë ate 3 pies")) == "Zoë ate 3 pies"


def test_bos_and_eos_only_when_asked(test_cards: SessionCards) -> None:
    card = test_cards.llms.eurollm_card
    plain = load_target_llm_embeddings(card).encode(TRANSCRIPT)
    framed = load_target_llm_embeddings(card, add_bos=True, add_eos=True).encode(
        TRANSCRIPT
    )

    assert framed.tolist() == [1, *plain.tolist(), 4]


def test_pad_token_argument_overrides_the_card(test_cards: SessionCards) -> None:
    target = load_target_llm_embeddings(
        test_cards.llms.llama_card, pad_token="<|eot_id|>"
    )

    assert target.pad_token == "<|eot_id|>"
    assert target.pad_idx == token_to_id(target.tokenizer, "<|eot_id|>")


def test_unknown_pad_token(test_cards: SessionCards) -> None:
    with pytest.raises(TargetLLMCardError, match="'<pad>' .*`pad_token`"):
        load_target_llm_embeddings(test_cards.llms.llama_card, pad_token="<pad>")

    card = derived_card(test_cards.llms.eurollm_card, speechmapper_pad_token="<|pad|>")
    with pytest.raises(TargetLLMCardError, match="speechmapper_pad_token"):
        load_target_llm_embeddings(card)


def test_pad_falls_back_to_the_tokenizer(test_cards: SessionCards) -> None:
    llms = test_cards.llms

    # No card field: the tokenizer's own pad token (EuroLLM: </s>).
    card = AssetCard(
        "eurollm_no_field",
        {
            "checkpoint": str(llms.eurollm_dir),
            "tokenizer": str(llms.eurollm_dir),
            "tokenizer_family": "hg",
        },
    )
    assert load_target_llm_embeddings(card).pad_idx == 2

    # Neither a card field nor a tokenizer pad token: a clear error.
    no_pad = AssetCard(
        "eurollm_no_pad",
        {
            "checkpoint": str(llms.eurollm_dir),
            "tokenizer": str(llms.eurollm_nopad_tokenizer_dir),
            "tokenizer_family": "hg",
        },
    )
    with pytest.raises(TargetLLMCardError, match="No pad token"):
        load_target_llm_embeddings(no_pad)


def test_tokenizer_larger_than_the_table(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    # A checkpoint whose table has fewer rows than the tokenizer has tokens.
    small = tmp_path / "model.safetensors"
    save_file({"model.embed_tokens.weight": torch.randn(300, 64)}, small)

    largest = hf_tokenizer_size(test_cards.llms.llama_dir) - 1  # <|python_tag|>
    assert largest >= 300

    card = derived_card(
        test_cards.llms.llama_card,
        checkpoint=str(small),
        model_config={"vocab_size": 300},
    )
    with pytest.raises(
        TargetLLMCardError, match=f"can produce token id {largest}.*only 300 rows"
    ):
        load_target_llm_embeddings(card)


def test_card_config_disagreeing_with_the_checkpoint(test_cards: SessionCards) -> None:
    card = derived_card(test_cards.llms.llama_card, model_config={"model_dim": 128})
    with pytest.raises(TargetLLMCardError, match=r", 64\].*'model_dim': 128"):
        load_target_llm_embeddings(card)


def test_ids_outside_the_table_are_rejected(test_cards: SessionCards) -> None:
    target = load_target_llm_embeddings(test_cards.llms.llama_card)

    rows = target.num_embeddings
    with pytest.raises(ValueError, match=f"`pad_idx` \\({rows}\\) is outside"):
        TargetLLMEmbeddings(
            card_name="x",
            tokenizer=target.tokenizer,
            table=target.table,
            pad_idx=rows,
            pad_token="?",
        )


def test_encode_applies_the_transcript_normalization(test_cards: SessionCards) -> None:
    """The policy is the target type's: the ids of the hand-normalised text."""
    from transformers import AutoTokenizer

    llms = test_cards.llms
    reference = AutoTokenizer.from_pretrained(llms.llama_dir)
    target = load_target_llm_embeddings(llms.llama_card, normalization="sentence_case")

    assert target.encode("THE OLD DOG SAW I").tolist() == reference.encode(
        "The old dog saw I", add_special_tokens=False
    )
    assert target.to(dtype=torch.float16).normalization == "sentence_case"


def test_tokens_with_a_loaded_table_match_the_loader(test_cards: SessionCards) -> None:
    """Stage 2's path (tokens first, the loaded LLM's table later) gives what
    stage 1's loader gives, and checks the table as the loader does."""
    card = test_cards.llms.eurollm_card
    loaded = load_target_llm_embeddings(card, add_bos=True, add_eos=True)
    tokens = resolve_target_tokens(card, add_bos=True, add_eos=True)

    assert not isinstance(tokens, TargetLLMEmbeddings)
    attached = tokens.with_table(loaded.table)
    assert attached.table is loaded.table
    assert (attached.pad_idx, attached.bos_idx, attached.eos_idx) == (2, 1, 4)
    assert torch.equal(attached.encode(TRANSCRIPT), loaded.encode(TRANSCRIPT))

    with pytest.raises(TargetLLMCardError, match=r"only 3 rows"):
        tokens.with_table(loaded.table[:3])

    with pytest.raises(TargetLLMCardError, match=r"'model_dim': 64"):
        tokens.with_table(torch.zeros(loaded.num_embeddings, 32))

    with pytest.raises(ValueError, match=r"must be \[vocab, dim\]"):
        tokens.with_table(loaded.table[0])
