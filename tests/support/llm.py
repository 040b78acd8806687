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
``model_config``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

LLAMA_CARD: Final = "test_llama"
EUROLLM_CARD: Final = "test_eurollm"

EMBED_DIM: Final = 64
"""The embedding width of the tiny LLMs (= the tiny projector's output width)."""

TINY_DIMS: Final = {
    "num_layers": 2,
    "num_attn_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 192,
    "max_seq_len": 256,
}

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
"""Llama 3.1's named special tokens, in its order (ids 128000-128010 in the real one)."""

EUROLLM_SPECIAL_TOKENS: Final = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")

LLAMA3_SPLIT_REGEX: Final = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

# Meta's Llama 3.1 Instruct chat format without tools: a system turn is always
# there and starts with the knowledge cutoff and a date.
LLAMA3_1_JINJA: Final = (
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

# ChatML after EuroLLM's BOS.
CHATML_JINJA: Final = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_NOUNS = "cat dog bird fish horse child man woman teacher doctor farmer river house tree garden city road book letter song".split()
_ADJECTIVES = "old young big small red green quiet happy tired clever".split()
_VERBS = "saw found heard followed painted visited watched helped".split()
_PLACES = "near the river|in the garden|on the road|at the house|by the tree|in the city".split(
    "|"
)
_TIMES = "today|yesterday|in the morning|at night|every day".split("|")
_INSTRUCTIONS = (
    "Transcribe the audio.",
    "Repeat what was said.",
    "Write down what you hear.",
    "Translate the speech into German.",
    "Answer the question about the audio.",
    "You are a helpful assistant.",
    "The user asks and the assistant answers.",
    "The system gives the answer.",
)


def training_sentences(count: int = 400, seed: int = 0) -> list[str]:
    """Templated English: transcripts like "The old dog saw a bird near the river."
    plus the instruction/chat words prompts use."""
    rng = random.Random(seed)

    sentences = list(_INSTRUCTIONS) * 10
    while len(sentences) < count:
        subject = (
            f"{rng.choice(['The', 'A'])} {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        )
        obj = f"{rng.choice(['the', 'a'])} {rng.choice(_NOUNS)}"
        extra = rng.choice(_PLACES + _TIMES)
        sentences.append(f"{subject} {rng.choice(_VERBS)} {obj} {extra}.")

    return sentences


def build_llama3_tokenizer(directory: Path) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` of a tiny Llama 3 tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing

    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()

    trainer = trainers.BpeTrainer(
        vocab_size=384,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_sentences(), trainer)

    tokenizer.add_special_tokens(list(LLAMA3_SPECIAL_TOKENS))
    bos = LLAMA3_SPECIAL_TOKENS[0]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tokenizer.token_to_id(bos))],
    )

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "clean_up_tokenization_spaces": True,
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 131072,
            "chat_template": LLAMA3_1_JINJA,
        },
    )

    return directory


def build_eurollm_tokenizer(directory: Path, *, with_pad: bool = True) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` of a tiny EuroLLM-style tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # Learn SentencePiece-style pieces (never across words) ...
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=180, show_progress=False)
    learner.train_from_iterator(training_sentences(), trainer)
    learned = json.loads(learner.to_str())["model"]

    # ... then lay the vocabulary out like EuroLLM's: specials, byte fallbacks, pieces.
    vocab: dict[str, int] = {}
    for token in (
        *EUROLLM_SPECIAL_TOKENS,
        *(f"<0x{b:02X}>" for b in range(256)),
        *sorted(learned["vocab"], key=learned["vocab"].get),
    ):
        vocab.setdefault(token, len(vocab))

    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in learned["merges"]
    ]

    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token="<unk>",
            byte_fallback=True,
            fuse_unk=True,
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        prepend_scheme="first", split=False
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tokenizer.add_special_tokens(list(EUROLLM_SPECIAL_TOKENS))

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))

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
    _write_json(directory / "tokenizer_config.json", config)

    return directory


def hf_tokenizer_size(directory: Path) -> int:
    """``len(tokenizer)`` (regular + added tokens) of the tokenizer in ``directory``."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab_size(
        with_added_tokens=True
    )


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
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=EMBED_DIM,
        intermediate_size=TINY_DIMS["intermediate_size"],
        num_hidden_layers=TINY_DIMS["num_layers"],
        num_attention_heads=TINY_DIMS["num_attn_heads"],
        num_key_value_heads=TINY_DIMS["num_key_value_heads"],
        max_position_embeddings=TINY_DIMS["max_seq_len"],
        rms_norm_eps=1e-5,
        rope_theta=rope_theta,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        attn_implementation="eager",
    )

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()

    # Make every row distinct and non-trivial (HF zero-initialises the pad row).
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 0.5)

    return model


def fairseq2_model_config(vocab_size: int, rope_theta: float) -> dict[str, Any]:
    """``model_config`` that makes fairseq2's ``llama`` family match :func:`build_hf_llama`.

    fairseq2's FFN width is ``ffn_inner_dim * 2/3`` rounded up to a multiple of
    ``ffn_inner_dim_multiple_of``: 288 * 2/3 = 192 = HF ``intermediate_size``.
    """
    return {
        "model_dim": EMBED_DIM,
        "max_seq_len": TINY_DIMS["max_seq_len"],
        "vocab_size": vocab_size,
        "num_layers": TINY_DIMS["num_layers"],
        "num_attn_heads": TINY_DIMS["num_attn_heads"],
        "num_key_value_heads": TINY_DIMS["num_key_value_heads"],
        "ffn_inner_dim": TINY_DIMS["intermediate_size"] * 3 // 2,
        "ffn_inner_dim_multiplier": 1.0,
        "ffn_inner_dim_multiple_of": 64,
        "rope_theta": rope_theta,
        "use_scaled_rope": False,
        "tied_embeddings": False,
    }


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


LLAMA_ROPE_THETA: Final = 500_000.0
EUROLLM_ROPE_THETA: Final = 10_000.0


def build_tiny_llms(root: Path) -> tuple[TinyLLMs, list[dict[str, object]]]:
    """Write both tiny LLMs under ``root``; return them and their cards."""
    llama_dir = build_llama3_tokenizer(root / "tiny_llama")
    llama_vocab = _table_rows(hf_tokenizer_size(llama_dir))
    from tokenizers import Tokenizer

    llama_tok = Tokenizer.from_file(str(llama_dir / "tokenizer.json"))
    llama = build_hf_llama(
        llama_vocab,
        seed=1,
        rope_theta=LLAMA_ROPE_THETA,
        bos=llama_tok.token_to_id("<|begin_of_text|>"),
        eos=llama_tok.token_to_id("<|eot_id|>"),
    )
    llama.save_pretrained(llama_dir, safe_serialization=True)

    eurollm_dir = build_eurollm_tokenizer(root / "tiny_eurollm")
    eurollm_vocab = _table_rows(hf_tokenizer_size(eurollm_dir))
    eurollm = build_hf_llama(
        eurollm_vocab, seed=2, rope_theta=EUROLLM_ROPE_THETA, bos=1, eos=4, pad=2
    )
    eurollm.save_pretrained(eurollm_dir, safe_serialization=True)

    nopad_dir = build_eurollm_tokenizer(
        root / "tiny_eurollm_nopad_tokenizer", with_pad=False
    )

    cards: list[dict[str, object]] = [
        {
            "name": LLAMA_CARD,
            "model_family": "llama",
            "model_config": {**fairseq2_model_config(llama_vocab, LLAMA_ROPE_THETA)},
            "checkpoint": str(llama_dir),
            "tokenizer": str(llama_dir),
            "tokenizer_family": "llama",
            "tokenizer_config": {"impl": "hg", "use_eot": True},
            "speechmapper_pad_token": "<|finetune_right_pad_id|>",
            "speechmapper_chat_template": "llama3",
        },
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
        llama_dir=llama_dir,
        eurollm_dir=eurollm_dir,
        eurollm_nopad_tokenizer_dir=nopad_dir,
    )
    return llms, cards


def _table_rows(tokenizer_size: int) -> int:
    """Embedding rows: the tokenizer's size rounded up to a multiple of 32 (spare
    rows, like Llama 3's reserved tokens), at most 512."""
    rows = -(-tokenizer_size // 32) * 32
    if rows > 512:
        raise AssertionError(f"The tiny tokenizer grew to {tokenizer_size} tokens.")
    return rows


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))
