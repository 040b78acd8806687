"""Writing fairseq2 asset cards for the tiny checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml


def write_card_file(path: Path, cards: Sequence[Mapping[str, object]]) -> Path:
    """Write ``cards`` as one multi-document YAML file (fairseq2's card format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all([dict(c) for c in cards], sort_keys=False))
    return path
