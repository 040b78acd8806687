"""Tiny target LLMs for tests: a Llama-3-style and a EuroLLM-style checkpoint.

Each is a Hugging Face directory, exactly the layout of the real releases: a
``LlamaForCausalLM`` saved with ``save_pretrained`` (safetensors, 64-d
embeddings, the tiny projector's output width) and, in the same directory, a
tokenizer trained here on templated English so that simple transcripts take a
handful of tokens:

- Llama 3 style: byte-level BPE with Llama 3's pre-tokenizer regex and
  ``ignore_merges``, regular tokens first, then Llama 3.1's special tokens
  (``<|begin_of_text|>`` ... ``<|finetune_right_pad_id|>`` ... ``<|eot_id|>``);
  the chat template in ``tokenizer_config.json`` reproduces Meta's Llama 3.1
  format (dated default system turn, no tools).
- EuroLLM style: SentencePiece-like BPE (Metaspace, byte fallback) with
  ``<unk> <s> </s> <|im_start|> <|im_end|>`` at ids 0-4, as in EuroLLM
  (bos 1, pad 2, eos 4), and a ChatML chat template after ``<s>``.

Both load through fairseq2 cards (``test_llama``: ``llama`` tokenizer family,
``impl: hg``; ``test_eurollm``: ``hg`` family, arch ``eurollm_9b`` shrunk by
``model_config``). The Llama 3 one, the corpus and the model builder are the
package's :mod:`speechmapper_plugin.tiny_assets` (which the quickstart uses
too); the EuroLLM-style tokenizer is built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from speechmapper_plugin.tiny_assets import (
    LLAMA3_ROPE_THETA,
    TINY_LLAMA_DIMS,
    embedding_rows,
    fairseq2_llama_config,
    hf_tokenizer_size,
    training_sentences,
    write_tiny_llama3,
)
from speechmapper_plugin.tiny_assets import build_hf_llama as _build_hf_llama
from speechmapper_plugin.tiny_assets.tokenizer_files import (
    save_tokenizer,
    sentencepiece_style_bpe,
)

LLAMA_CARD: Final = "test_llama"
EUROLLM_CARD: Final = "test_eurollm"

EMBED_DIM: Final = TINY_LLAMA_DIMS.model_dim
"""The embedding width of the tiny LLMs (= the tiny projector's output width)."""

EUROLLM_SPECIAL_TOKENS: Final = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")

# ChatML after EuroLLM's BOS.
CHATML_JINJA: Final = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_eurollm_tokenizer(directory: Path, *, with_pad: bool = True) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` of a tiny EuroLLM-style tokenizer."""
    tokenizer = sentencepiece_style_bpe(
        training_sentences(), EUROLLM_SPECIAL_TOKENS, vocab_size=180
    )
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "<|im_end|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "chat_template": CHATML_JINJA,
    }
    if with_pad:
        config["pad_token"] = "</s>"
    return save_tokenizer(directory, tokenizer, config)


def build_hf_llama(
    vocab_size: int,
    *,
    seed: int,
    rope_theta: float,
    bos: int,
    eos: int,
    pad: int | None = None,
) -> torch.nn.Module:
    """A tiny ``LlamaForCausalLM`` (untied, rms_norm_eps 1e-5) in eval mode."""
    return _build_hf_llama(
        vocab_size, seed=seed, rope_theta=rope_theta, bos=bos, eos=eos, pad=pad
    )


def fairseq2_model_config(vocab_size: int, rope_theta: float) -> dict[str, Any]:
    """``model_config`` that makes fairseq2's ``llama`` family match :func:`build_hf_llama`."""
    return fairseq2_llama_config(vocab_size, rope_theta)


@dataclass(frozen=True)
class TinyLLMs:
    """What the tiny-LLM builders wrote: directories and card names."""

    llama_dir: Path
    """HF checkpoint + Llama 3 tokenizer (card :data:`LLAMA_CARD`)."""

    eurollm_dir: Path
    """HF checkpoint + EuroLLM tokenizer (card :data:`EUROLLM_CARD`)."""

    eurollm_nopad_tokenizer_dir: Path
    """The EuroLLM tokenizer without a pad token (for the no-pad error path)."""

    llama_card: str = LLAMA_CARD
    eurollm_card: str = EUROLLM_CARD
    embed_dim: int = EMBED_DIM


LLAMA_ROPE_THETA: Final = LLAMA3_ROPE_THETA
EUROLLM_ROPE_THETA: Final = 10_000.0


def build_tiny_llms(root: Path) -> tuple[TinyLLMs, list[dict[str, object]]]:
    """Write both tiny LLMs under ``root``; return them and their cards."""
    llama = write_tiny_llama3(
        root / "tiny_llama",
        card_name=LLAMA_CARD,
        sentences=training_sentences(),
        seed=1,
    )

    eurollm_dir = build_eurollm_tokenizer(root / "tiny_eurollm")
    eurollm_vocab = embedding_rows(hf_tokenizer_size(eurollm_dir))
    eurollm = build_hf_llama(
        eurollm_vocab, seed=2, rope_theta=EUROLLM_ROPE_THETA, bos=1, eos=4, pad=2
    )
    eurollm.save_pretrained(eurollm_dir, safe_serialization=True)

    nopad_dir = build_eurollm_tokenizer(
        root / "tiny_eurollm_nopad_tokenizer", with_pad=False
    )

    cards: list[dict[str, object]] = [
        llama.card,
        {
            "name": EUROLLM_CARD,
            "model_family": "llama",
            "model_arch": "eurollm_9b",
            "model_config": {
                **fairseq2_model_config(eurollm_vocab, EUROLLM_ROPE_THETA),
                "pad_idx": 2,
            },
            "checkpoint": str(eurollm_dir),
            "tokenizer": str(eurollm_dir),
            "tokenizer_family": "hg",
            "tokenizer_config": {
                "unk_token": "<unk>",
                "bos_token": "<s>",
                "eos_token": "<|im_end|>",
                "pad_token": "</s>",
            },
            "speechmapper_pad_token": "</s>",
            "speechmapper_chat_template": "chatml",
        },
    ]

    llms = TinyLLMs(
        llama_dir=llama.directory,
        eurollm_dir=eurollm_dir,
        eurollm_nopad_tokenizer_dir=nopad_dir,
    )
    return llms, cards
