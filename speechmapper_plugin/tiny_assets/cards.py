"""Writing fairseq2 asset cards for the tiny checkpoints."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

PATH_FIELDS: Final = ("checkpoint", "tokenizer")
"""The card fields that may hold a local path."""


def write_card_file(path: Path, cards: Sequence[Mapping[str, object]]) -> Path:
    """Write ``cards`` as one multi-document YAML file (fairseq2's card format).

    Absolute local paths are written relative to the file (fairseq2 resolves
    them against it), so a directory holding both the cards and what they
    point at still works when copied or moved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    relative = [_relative_paths(card, path.parent) for card in cards]
    path.write_text(yaml.safe_dump_all(relative, sort_keys=False))
    return path


def read_card(path: Path) -> dict[str, Any]:
    """The one card of a card file, its relative paths resolving against the
    file as when fairseq2 reads it (``AssetCard(name, card)`` loads it)."""
    card = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(card, dict):
        raise ValueError(f"{path} does not hold one card.")
    card["__base_path__"] = path.parent
    return card


def _relative_paths(card: Mapping[str, object], directory: Path) -> dict[str, object]:
    card = dict(card)
    for field in PATH_FIELDS:
        value = card.get(field)
        if isinstance(value, str) and Path(value).is_absolute():
            card[field] = os.path.relpath(value, directory)
    return card
