"""A tiny Qwen2.5-Instruct-style tokenizer in Hugging Face's format.

Byte-level BPE learnt here, followed by Qwen2.5's first special tokens in its
order (``<|endoftext|>`` ``<|im_start|>`` ``<|im_end|>`` ...); no BOS token.
``tokenizer_config.json`` carries Qwen2.5 Instruct's chat template without its
tool branches (a default system turn when no system message is given), so
``AutoTokenizer.apply_chat_template`` formats chats as the released tokenizer
does. fairseq2's ``qwen`` tokenizer family loads it as it loads the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.tiny_assets.tokenizer_files import (
    byte_level_bpe,
    save_tokenizer,
)

QWEN25_SPECIAL_TOKENS: Final = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
)
"""Qwen2.5's first special tokens, in its order (ids 151643-151647 in the real one)."""

QWEN25_DEFAULT_SYSTEM: Final = (
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
)

QWEN25_CHAT_JINJA: Final = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""Qwen2.5-Instruct's ``chat_template`` without its tool branches."""


def build_qwen_tokenizer(
    directory: Path, sentences: Sequence[str], *, vocab_size: int = 384
) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` into ``directory``."""
    tokenizer = byte_level_bpe(sentences, QWEN25_SPECIAL_TOKENS, vocab_size=vocab_size)
    config: dict[str, Any] = {
        "tokenizer_class": "Qwen2TokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 32768,
        "chat_template": QWEN25_CHAT_JINJA,
    }
    return save_tokenizer(directory, tokenizer, config)
