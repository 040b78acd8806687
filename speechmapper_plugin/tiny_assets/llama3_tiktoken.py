"""A Llama-3 ``tokenizer.model`` at the real size: 128,000 BPE ranks.

Meta's released Llama 3 tokenizer is a tiktoken BPE file, one ``base64 rank``
line per regular token (128,000), read by fairseq2's ``llama`` tokenizer family
with ``impl: tiktoken``, which appends the 256 special tokens from id 128,000
on (``<|begin_of_text|>`` 128000, ``<|end_of_text|>`` 128001, ``<|eot_id|>``
128009, ...). This writes such a file so that every row of a 128,256-row
embedding table is a token: a random-weight LLM then generates decodable text,
and the dress rehearsal's evaluate/reload steps check a real string
(the quickstart's toy tokenizer, :mod:`.llama3_tokenizer`, has a few hundred
tokens and is left as it is).

The ranks: the 256 single bytes (printable first, rank 0 is ``!``); the merges a byte-level BPE learns on
``sentences`` (with Llama 3's pre-tokenizer, so that text like them encodes
into few tokens), in merge order, as tiktoken ranks them; then filler
pieces, a space and two to four lowercase letters, up to ``num_ranks``.
"""

from __future__ import annotations

import base64
import itertools
import json
import string
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from speechmapper_plugin.tiny_assets.llama3_tokenizer import (
    LLAMA3_SPECIAL_TOKENS,
    build_llama3_tokenizer,
)

LLAMA3_NUM_RANKS: Final = 128_000
"""Regular (BPE) tokens of Llama 3; its 256 special tokens follow them."""

LLAMA3_NUM_SPECIAL: Final = 256

LLAMA3_SPECIAL_IDS: Final = {
    token: LLAMA3_NUM_RANKS + i for i, token in enumerate(LLAMA3_SPECIAL_TOKENS)
}
"""The released ids (``<|begin_of_text|>`` 128000 ... ``<|python_tag|>`` 128010)."""

LEARNED_VOCAB_SIZE: Final = 1024
"""Byte-level BPE vocabulary learned on the sentences (bytes included)."""


def _byte_decoder() -> dict[str, int]:
    """The byte-level alphabet's characters back to bytes (GPT-2's map)."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def learned_pieces(sentences: Sequence[str], vocab_size: int) -> list[bytes]:
    """Byte-level BPE pieces learned on ``sentences`` as bytes, in id order
    (the byte alphabet, then each merge's result in merge order)."""
    decoder = _byte_decoder()
    with tempfile.TemporaryDirectory() as tmp:
        build_llama3_tokenizer(Path(tmp), sentences, vocab_size=vocab_size)
        model = json.loads((Path(tmp) / "tokenizer.json").read_text())["model"]
    vocab: dict[str, int] = model["vocab"]
    return [
        bytes(decoder[c] for c in token)
        for token in sorted(vocab, key=vocab.__getitem__)
    ]


def _filler() -> Iterator[bytes]:
    letters = string.ascii_lowercase
    for n in (2, 3, 4):
        for chars in itertools.product(letters, repeat=n):
            yield (" " + "".join(chars)).encode()


def llama3_ranks(
    sentences: Sequence[str],
    *,
    num_ranks: int = LLAMA3_NUM_RANKS,
    learned_vocab_size: int = LEARNED_VOCAB_SIZE,
) -> list[bytes]:
    """``num_ranks`` distinct pieces, rank = index (see the module docstring)."""
    if num_ranks < 256:
        raise ValueError(
            f"A byte-level BPE needs the 256 single bytes; num_ranks is {num_ranks}."
        )
    # The single bytes in GPT-2's alphabet order (printable first), as in
    # Meta's file (rank 0 is "!").
    alphabet = _byte_decoder().values()
    ranks: dict[bytes, None] = dict.fromkeys(bytes([b]) for b in alphabet)
    for piece in learned_pieces(sentences, learned_vocab_size):
        if len(ranks) == num_ranks:
            break
        ranks.setdefault(piece)
    filler = _filler()
    while len(ranks) < num_ranks:
        ranks.setdefault(next(filler))
    return list(ranks)


def write_llama3_tiktoken(
    path: Path,
    sentences: Sequence[str],
    *,
    num_ranks: int = LLAMA3_NUM_RANKS,
) -> Path:
    """Write the tiktoken BPE file (``base64 rank`` lines) to ``path``."""
    pieces = llama3_ranks(sentences, num_ranks=num_ranks)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (f"{base64.b64encode(p).decode()} {i}\n" for i, p in enumerate(pieces))
    path.write_text("".join(lines))
    return path


def llama3_tiktoken_card_fields(path: Path) -> dict[str, object]:
    """The card fields that load ``path`` as the released Llama 3 tokenizer
    (fairseq2's ``llama`` family, tiktoken, ``<|eot_id|>`` ending a turn)."""
    return {
        "tokenizer": str(path),
        "tokenizer_family": "llama",
        "tokenizer_config": {"impl": "tiktoken", "use_eot": True},
    }
