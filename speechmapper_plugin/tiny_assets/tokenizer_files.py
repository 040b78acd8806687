"""Reading and writing the files of a Hugging Face tokenizer directory."""

from __future__ import annotations

import json
from pathlib import Path


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
