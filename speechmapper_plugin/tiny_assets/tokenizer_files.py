"""Reading and writing the files of a Hugging Face tokenizer directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def write_json(path: Path, value: object) -> None:
    """Write ``value`` as indented UTF-8 JSON (as ``save_pretrained`` does)."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))


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
