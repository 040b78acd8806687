"""Reading and writing the files of a Hugging Face tokenizer directory."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.pre_tokenizers import PreTokenizer


def write_json(path: Path, value: object) -> None:
    """Write ``value`` as indented UTF-8 JSON (as ``save_pretrained`` does)."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))


def save_tokenizer(
    directory: Path, tokenizer: Tokenizer, config: Mapping[str, object]
) -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``
    (the files transformers' fast tokenizers and fairseq2's ``hg`` loaders read)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    write_json(directory / "tokenizer_config.json", dict(config))
    return directory


def byte_level_bpe(
    sentences: Sequence[str],
    special_tokens: Sequence[str],
    *,
    vocab_size: int,
    pre_tokenizer: PreTokenizer | None = None,
    ignore_merges: bool = False,
) -> Tokenizer:
    """A byte-level BPE tokenizer (Llama 3, Qwen2.5): pieces learned on
    ``sentences`` from the 256 byte symbols, then ``special_tokens``.

    :param pre_tokenizer: default: byte-level with GPT-2's word regex.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _check_sentences(sentences)
    tokenizer = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tokenizer.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=True
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(sentences), trainer)
    tokenizer.add_special_tokens(list(special_tokens))
    return tokenizer


def _check_sentences(sentences: Sequence[str]) -> None:
    if not sentences:
        raise ValueError("A tokenizer needs at least one training sentence.")


def hf_tokenizer_size(directory: Path) -> int:
    """``len(tokenizer)`` (regular + added tokens) of ``directory/tokenizer.json``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    return int(tokenizer.get_vocab_size(with_added_tokens=True))


def hf_token_id(directory: Path, token: str) -> int:
    """The id of ``token`` in ``directory/tokenizer.json``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    idx = tokenizer.token_to_id(token)
    if idx is None:
        raise ValueError(f"The tokenizer in {directory} has no token {token!r}.")
    return int(idx)


def sentencepiece_style_bpe(
    sentences: Sequence[str], special_tokens: Sequence[str], *, vocab_size: int
) -> Tokenizer:
    """A byte-fallback BPE tokenizer laid out like a SentencePiece model
    converted to ``tokenizer.json`` (Mistral, EuroLLM): ``special_tokens``
    first, then the 256 ``<0xNN>`` byte pieces, then pieces learned on
    ``sentences`` (never across words), ``▁`` marking word starts.

    No post-processor is set: whether a BOS is prepended is the caller's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _check_sentences(sentences)
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False)
    learner.train_from_iterator(list(sentences), trainer)
    learned = json.loads(learner.to_str())["model"]

    vocab: dict[str, int] = {}
    for token in (
        *special_tokens,
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
    tokenizer.add_special_tokens(list(special_tokens))
    return tokenizer
