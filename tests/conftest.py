"""Test-session setup: offline, loud plugin failures, one fairseq2 runtime.

fairseq2 builds its asset store once per process. Tests that need cards for
checkpoints they create (tiny models in temp dirs) register a *card builder*
in ``tests/support/cards.py``; the session fixture runs every builder into one
temp directory before the runtime starts, then registers that directory.
"""

from __future__ import annotations

import os

os.environ.setdefault("FAIRSEQ2_EXTENSION_TRACE", "1")
os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.support.cards import TestCards, build_test_cards  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def test_cards(tmp_path_factory: pytest.TempPathFactory) -> TestCards:
    """Writes the test checkpoints and cards, then starts the fairseq2 runtime."""
    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets
    from fairseq2.runtime.dependency import DependencyContainer

    root = tmp_path_factory.mktemp("test_assets")

    cards = build_test_cards(root)

    def register_test_assets(container: DependencyContainer) -> None:
        register_file_assets(container, cards.card_dir)

    init_fairseq2(extras=register_test_assets)

    return cards


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
