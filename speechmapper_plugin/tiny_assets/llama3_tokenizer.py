"""A tiny Llama-3-style tokenizer in Hugging Face's format, trained here.

Byte-level BPE with Llama 3's pre-tokenizer regex and ``ignore_merges``; the
regular tokens come first and Llama 3.1's named special tokens follow, in
Meta's order (ids 128000-128010 in the real tokenizer). ``tokenizer_config.json``
carries Meta's Llama 3.1 Instruct chat template, so fairseq2's ``llama``
tokenizer family (``impl: hg``) and transformers' ``AutoTokenizer`` load it
exactly as they load the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from speechmapper_plugin.tiny_assets.tokenizer_files import (
    byte_level_bpe,
    save_tokenizer,
)

LLAMA3_SPECIAL_TOKENS: Final = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
)
"""Llama 3.1's named special tokens, in its order."""

LLAMA3_BOS: Final = "<|begin_of_text|>"
LLAMA3_EOT: Final = "<|eot_id|>"
LLAMA3_PAD: Final = "<|finetune_right_pad_id|>"
"""Llama 3.1's reserved padding token: SpeechMapper's stage-1 pad target."""

LLAMA3_SPLIT_REGEX: Final = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
"""Llama 3's pre-tokenizer pattern (as in its ``tokenizer.json``)."""

LLAMA3_1_CHAT_JINJA: Final = (
    "{{- bos_token }}"
    "{%- if date_string is not defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
"""Meta's Llama 3.1 Instruct chat format without tools: a system turn is always
there and starts with the knowledge cutoff and a date."""

DEFAULT_VOCAB_SIZE: Final = 384
"""Regular tokens to learn: enough for whole words of a templated corpus."""


def build_llama3_tokenizer(
    directory: Path,
    sentences: Sequence[str],
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
) -> Path:
    """Train on ``sentences`` and write ``tokenizer.json`` and
    ``tokenizer_config.json`` into ``directory``.

    Any text still encodes (byte-level fallback); text like ``sentences``
    encodes into few tokens.
    """
    from tokenizers import Regex, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    tokenizer = byte_level_bpe(
        sentences,
        LLAMA3_SPECIAL_TOKENS,
        vocab_size=vocab_size,
        pre_tokenizer=pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        ignore_merges=True,
    )
    tokenizer.post_processor = TemplateProcessing(
        single=f"{LLAMA3_BOS} $A",
        pair=f"{LLAMA3_BOS} $A {LLAMA3_BOS} $B",
        special_tokens=[(LLAMA3_BOS, tokenizer.token_to_id(LLAMA3_BOS))],
    )
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": LLAMA3_BOS,
        "eos_token": LLAMA3_EOT,
        "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "chat_template": LLAMA3_1_CHAT_JINJA,
    }
    return save_tokenizer(directory, tokenizer, config)
