"""Tiny Llama-architecture LLMs in Hugging Face's format, and their fairseq2 cards.

The checkpoint is a ``LlamaForCausalLM`` saved with ``save_pretrained``
(safetensors), the layout of the real Llama 3 and EuroLLM releases, so the
plugin reads it through exactly the code that reads the 8B models: fairseq2's
``llama`` family for the model, the memory-mapped embedding loader for stage 1.
Weights are random; the embedding width matches the tiny projector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import torch

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, MistralForCausalLM

MAX_EMBEDDING_ROWS: Final = 1024


@dataclass(frozen=True, kw_only=True)
class TinyLlamaDims:
    """The shape of a tiny Llama (Hugging Face names where they exist)."""

    model_dim: int = 64
    """Embedding width; the tiny projector's ``output_dim``."""

    num_layers: int = 2

    num_attn_heads: int = 4

    num_key_value_heads: int = 2
    """Fewer than ``num_attn_heads``: grouped-query attention, as in Llama 3."""

    intermediate_size: int = 192
    """FFN width; a multiple of 64 so fairseq2's rounding reproduces it."""

    max_seq_len: int = 256


TINY_LLAMA_DIMS: Final = TinyLlamaDims()


def build_hf_llama(
    vocab_size: int,
    *,
    seed: int,
    rope_theta: float,
    bos: int,
    eos: int,
    pad: int | None = None,
    dims: TinyLlamaDims = TINY_LLAMA_DIMS,
    init_std: float = 0.2,
    hf_class: Literal["llama", "mistral"] = "llama",
) -> LlamaForCausalLM | MistralForCausalLM:
    """A ``LlamaForCausalLM`` (untied, ``rms_norm_eps=1e-5``) in eval mode with
    random weights, deterministic in ``seed``.

    :param init_std: the std of the random weights. HF's default (0.02) gives a
        tiny model near-uniform logits that barely depend on the context, so
        stage 2's CE could not move; 0.2 makes its predictions depend on what it
        reads (the speech embeddings included).
    :param hf_class: ``mistral``: the same decoder as a ``MistralForCausalLM``
        without a sliding window (Mistral v0.3 is a Llama-architecture decoder).
    """
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
    )

    fields: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": dims.model_dim,
        "intermediate_size": dims.intermediate_size,
        "num_hidden_layers": dims.num_layers,
        "num_attention_heads": dims.num_attn_heads,
        "num_key_value_heads": dims.num_key_value_heads,
        "max_position_embeddings": dims.max_seq_len,
        "rms_norm_eps": 1e-5,
        "rope_theta": rope_theta,
        "tie_word_embeddings": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "initializer_range": init_std,
        "attn_implementation": "eager",
    }

    torch.manual_seed(seed)
    model: LlamaForCausalLM | MistralForCausalLM
    if hf_class == "mistral":
        model = MistralForCausalLM(MistralConfig(**fields, sliding_window=None))
    else:
        model = LlamaForCausalLM(LlamaConfig(**fields))
    model.eval()

    # Make every row distinct and non-trivial (HF zero-initialises the pad row).
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 0.5)

    return model


def fairseq2_llama_config(
    vocab_size: int, rope_theta: float, dims: TinyLlamaDims = TINY_LLAMA_DIMS
) -> dict[str, Any]:
    """The card's ``model_config`` that makes fairseq2's ``llama`` family build
    the model :func:`build_hf_llama` saved.

    fairseq2's FFN width is ``ffn_inner_dim * 2/3`` rounded up to a multiple of
    ``ffn_inner_dim_multiple_of``; ``intermediate_size * 3/2`` undoes it.
    """
    if dims.intermediate_size % 64:
        raise ValueError(
            f"`intermediate_size` must be a multiple of 64 for fairseq2 to reproduce it, but is {dims.intermediate_size}."
        )

    return {
        "model_dim": dims.model_dim,
        "max_seq_len": dims.max_seq_len,
        "vocab_size": vocab_size,
        "num_layers": dims.num_layers,
        "num_attn_heads": dims.num_attn_heads,
        "num_key_value_heads": dims.num_key_value_heads,
        "ffn_inner_dim": dims.intermediate_size * 3 // 2,
        "ffn_inner_dim_multiplier": 1.0,
        "ffn_inner_dim_multiple_of": 64,
        "rope_theta": rope_theta,
        "use_scaled_rope": False,
        "tied_embeddings": False,
    }


def embedding_rows(tokenizer_size: int) -> int:
    """Embedding rows for a tokenizer of ``tokenizer_size`` tokens: rounded up to
    a multiple of 32, leaving spare rows as Llama 3's table does (128256 rows
    for 128000 + 256 special tokens)."""
    rows = -(-tokenizer_size // 32) * 32
    if rows > MAX_EMBEDDING_ROWS:
        raise ValueError(
            f"The tiny tokenizer has {tokenizer_size} tokens; a tiny LLM holds at most {MAX_EMBEDDING_ROWS} embedding rows. Train it with a smaller `vocab_size`."
        )
    return rows
