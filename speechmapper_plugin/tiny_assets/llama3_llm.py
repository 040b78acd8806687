"""A complete tiny Llama-3-style target LLM: checkpoint, tokenizer and card."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from speechmapper_plugin.llm.cards import CHAT_TEMPLATE_FIELD, PAD_TOKEN_FIELD
from speechmapper_plugin.tiny_assets.llama import (
    TINY_LLAMA_DIMS,
    TinyLlamaDims,
    build_hf_llama,
    embedding_rows,
    fairseq2_llama_config,
)
from speechmapper_plugin.tiny_assets.llama3_tokenizer import (
    DEFAULT_VOCAB_SIZE,
    LLAMA3_BOS,
    LLAMA3_EOT,
    LLAMA3_PAD,
    build_llama3_tokenizer,
)
from speechmapper_plugin.tiny_assets.tokenizer_files import (
    hf_token_id,
    hf_tokenizer_size,
)

LLAMA3_ROPE_THETA: Final = 500_000.0
"""Llama 3's RoPE base."""

LLAMA3_CHAT_TEMPLATE: Final = "llama3"
"""The plugin's chat template for Llama 3 Instruct (``speechmapper_chat_template``)."""


@dataclass(frozen=True)
class TinyLLM:
    """A tiny target LLM written to disk."""

    directory: Path
    """The Hugging Face directory: ``model.safetensors``, ``config.json``,
    ``tokenizer.json``, ``tokenizer_config.json``."""

    card: dict[str, object]
    """Its fairseq2 asset card (write it with :func:`write_card_file`)."""

    vocab_size: int
    """Rows of the embedding table (at least the tokenizer's size)."""

    embed_dim: int

    @property
    def card_name(self) -> str:
        return str(self.card["name"])


def write_tiny_llama3(
    directory: Path,
    *,
    card_name: str,
    sentences: Sequence[str],
    seed: int = 1,
    tokenizer_vocab_size: int = DEFAULT_VOCAB_SIZE,
    dims: TinyLlamaDims = TINY_LLAMA_DIMS,
    init_std: float = 0.2,
    rope_theta: float = LLAMA3_ROPE_THETA,
) -> TinyLLM:
    """Train a Llama 3 tokenizer on ``sentences`` and save a random
    ``LlamaForCausalLM`` next to it in ``directory``.

    The card loads the model through fairseq2's ``llama`` family and the
    tokenizer through its ``llama`` tokenizer family (``impl: hg``, ``<|eot_id|>``
    ends turns), and names Llama 3.1's ``<|finetune_right_pad_id|>`` as the
    stage-1 pad token and the ``llama3`` chat template.

    :param init_std: see :func:`build_hf_llama` (a model trained from scratch
        starts better from a smaller one).
    :param rope_theta: Llama 3's base by default; a tiny head dimension
        resolves positions better with a smaller one.
    """
    build_llama3_tokenizer(directory, sentences, vocab_size=tokenizer_vocab_size)

    vocab_size = embedding_rows(hf_tokenizer_size(directory))

    model = build_hf_llama(
        vocab_size,
        seed=seed,
        rope_theta=rope_theta,
        bos=hf_token_id(directory, LLAMA3_BOS),
        eos=hf_token_id(directory, LLAMA3_EOT),
        dims=dims,
        init_std=init_std,
    )
    model.save_pretrained(directory, safe_serialization=True)

    card: dict[str, object] = {
        "name": card_name,
        "model_family": "llama",
        "model_config": fairseq2_llama_config(vocab_size, rope_theta, dims),
        "checkpoint": str(directory),
        "tokenizer": str(directory),
        "tokenizer_family": "llama",
        "tokenizer_config": {"impl": "hg", "use_eot": True},
        PAD_TOKEN_FIELD: LLAMA3_PAD,
        CHAT_TEMPLATE_FIELD: LLAMA3_CHAT_TEMPLATE,
    }

    return TinyLLM(
        directory=directory,
        card=card,
        vocab_size=vocab_size,
        embed_dim=dims.model_dim,
    )
