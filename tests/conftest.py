"""Test-session setup: offline, loud plugin failures, one fairseq2 runtime.

fairseq2 builds its asset store once per process, on first use. Tests that need
cards for checkpoints they create (tiny models in temp dirs) add a *card
builder* to ``tests/support/cards.py``; the session fixture starts the runtime
with one temp card directory registered, then runs every builder into it before
any test can touch the asset store.
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

from speechmapper_plugin.generation.config import GenerationConfig  # noqa: E402
from speechmapper_plugin.speech_llm import SpeechMapperPipeline  # noqa: E402
from tests.support.cards import SessionCards, build_test_cards  # noqa: E402
from tests.support.corpus import SpeechCorpus  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def test_cards(tmp_path_factory: pytest.TempPathFactory) -> SessionCards:
    """Writes the test checkpoints and cards, then starts the fairseq2 runtime."""
    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets
    from fairseq2.runtime.dependency import DependencyContainer

    root = tmp_path_factory.mktemp("test_assets")
    card_dir = root / "cards"
    card_dir.mkdir()

    def register_test_assets(container: DependencyContainer) -> None:
        register_file_assets(container, card_dir)

    init_fairseq2(extras=register_test_assets)

    return build_test_cards(root, card_dir)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def speech_corpus(
    tmp_path_factory: pytest.TempPathFactory, test_cards: SessionCards
) -> SpeechCorpus:
    """Synthesised speech extracted into a feature store by the real recipe
    (built once; the stage-1, stage-2 and generation tests share it)."""
    from tests.support.corpus import build_speech_corpus

    return build_speech_corpus(tmp_path_factory.mktemp("speech_corpus"), test_cards)


@pytest.fixture(scope="session")
def stage1_run(
    tmp_path_factory: pytest.TempPathFactory,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
) -> Path:
    """The shared stage-1 run (``STAGE1_STEPS``) of the tiny projector for the tiny Llama."""
    from tests.support.corpus import run_stage1

    return run_stage1(tmp_path_factory.mktemp("stage1_run"), speech_corpus, test_cards)


@pytest.fixture(scope="module")
def pipeline(request: pytest.FixtureRequest) -> SpeechMapperPipeline:
    """The test cards' pipeline (tiny SeamlessM4T-v2 HF encoder, projector,
    Llama), once per module; decoding as the module's ``GENERATION`` says
    (4 new tokens where it has none)."""
    generation = getattr(
        request.module, "GENERATION", GenerationConfig(max_new_tokens=4)
    )
    return SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=generation,
    )
