"""A tiny Mistral-7B-Instruct-v0.3-style LLM and tokenizer in Hugging Face's format.

- Tokenizer: SentencePiece-style BPE pieces (``▁``, byte fallback) laid out
  like Mistral v0.3's vocabulary: ``<unk>`` ``<s>`` ``</s>`` ``[INST]``
  ``[/INST]``, the tool tokens and reserved ``[control_N]`` tokens, then the
  256 byte tokens, then the pieces. ``tokenizer_config.json`` carries the
  Mistral v0.3 Instruct chat template (its branches for tools left out), so
  ``AutoTokenizer.apply_chat_template`` formats chats as the real one does.
- Model: a transformers ``MistralForCausalLM`` (no sliding window, rope base
  1e6, grouped-query attention, as v0.3), saved as safetensors. v0.3 is a
  Llama-architecture decoder, so the card loads it with fairseq2's ``llama``
  family (see ``speechmapper_plugin.llm.archs.mistral_7b_v0_3_config``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.tiny_assets.llama import (
    TINY_LLAMA_DIMS,
    TinyLlamaDims,
    build_hf_llama,
    embedding_rows,
    fairseq2_llama_config,
)
from speechmapper_plugin.tiny_assets.tokenizer_files import (
    hf_tokenizer_size,
    save_tokenizer,
    sentencepiece_style_bpe,
)

MISTRAL_V3_SPECIAL_TOKENS: Final = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    *(f"[control_{i}]" for i in range(8, 14)),
)
"""Mistral v0.3's first special tokens, in its order (ids 0-15; the real
vocabulary continues the ``[control_N]`` tokens up to id 767)."""

MISTRAL_PAD: Final = "<unk>"
"""The stage-1 pad token of the Mistral cards (v0.3 defines no pad token)."""

MISTRAL_V3_ROPE_THETA: Final = 1_000_000.0

MISTRAL_V3_CHAT_JINJA: Final = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content']|trim + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}"
    "{%- endif %}"
    "{%- endfor %}"
)
"""Mistral-7B-Instruct-v0.3's ``chat_template`` without its tool branches: the
system message goes into the last user turn; no generation prompt (the prompt
ends with ``[/INST]``)."""

TOKENIZER_CARD_CONFIG: Final = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
}
"""fairseq2 ``hg`` tokenizer config of the Mistral cards (no pad token)."""


def build_mistral_tokenizer(
    directory: Path, sentences: Sequence[str], *, vocab_size: int = 180
) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` of a tiny Mistral v0.3-style tokenizer."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = sentencepiece_style_bpe(
        sentences, MISTRAL_V3_SPECIAL_TOKENS, vocab_size=vocab_size
    )
    tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    config: dict[str, Any] = {
        "tokenizer_class": "LlamaTokenizerFast",
        **TOKENIZER_CARD_CONFIG,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": 32768,
        "chat_template": MISTRAL_V3_CHAT_JINJA,
    }
    return save_tokenizer(directory, tokenizer, config)


def build_hf_mistral(
    vocab_size: int, *, seed: int, dims: TinyLlamaDims = TINY_LLAMA_DIMS
) -> Any:
    """A random ``MistralForCausalLM`` shaped like v0.3 (no sliding window, rope 1e6)."""
    return build_hf_llama(
        vocab_size,
        seed=seed,
        rope_theta=MISTRAL_V3_ROPE_THETA,
        bos=1,
        eos=2,
        dims=dims,
        hf_class="mistral",
    )


def write_tiny_mistral(
    directory: Path, *, card_name: str, sentences: Sequence[str], seed: int = 3
) -> dict[str, object]:
    """Tokenizer + random model in ``directory``; return the card (``llama``
    family, ``mistral_7b_v0_3`` arch, tiny overrides)."""
    build_mistral_tokenizer(directory, sentences)

    vocab_size = embedding_rows(hf_tokenizer_size(directory))

    build_hf_mistral(vocab_size, seed=seed).save_pretrained(
        directory, safe_serialization=True
    )

    return {
        "name": card_name,
        "model_family": "llama",
        "model_arch": "mistral_7b_v0_3",
        "model_config": fairseq2_llama_config(vocab_size, MISTRAL_V3_ROPE_THETA),
        "checkpoint": str(directory),
        "tokenizer": str(directory),
        "tokenizer_family": "hg",
        "tokenizer_config": dict(TOKENIZER_CARD_CONFIG),
        "speechmapper_pad_token": MISTRAL_PAD,
        "speechmapper_chat_template": "mistral",
    }
