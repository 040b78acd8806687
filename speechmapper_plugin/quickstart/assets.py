"""The quickstart's models and their cards: the tiny speech encoder and the
toy LLM, trained here on the toy world's text."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from speechmapper_plugin.quickstart.layout import QuickstartLayout
from speechmapper_plugin.tiny_assets import write_card_file, write_tiny_sm4t
from speechmapper_plugin.tiny_assets.cards import read_card
from speechmapper_plugin.tiny_assets.text_llm import (
    ToyLLMTrainingConfig,
    ToyLLMTrainingResult,
    train_toy_llm,
)
from speechmapper_plugin.tiny_assets.toy_world import ParallelSentence

SFM_CARD: Final = "quickstart_sm4t_v2_tiny"
LLM_CARD: Final = "quickstart_toy_llm"

LLM_LOG_EVERY: Final = 250
"""Training steps between the toy LLM's progress lines."""


def build_speech_encoder(layout: QuickstartLayout, seed: int) -> None:
    """The tiny SeamlessM4T-v2 (random, frozen) and its card."""
    with _quiet_transformers():
        card = write_tiny_sm4t(
            layout.assets / "sm4t_v2_tiny", card_name=SFM_CARD, seed=seed
        )
    write_card_file(layout.cards / "sm4t.yaml", [card])


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Without transformers' advice on models it constructs (meant for people
    writing model code, not for quickstart users)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def build_toy_llm(
    layout: QuickstartLayout,
    train: Sequence[ParallelSentence],
    *,
    steps: int,
    seed: int,
    log: Callable[[str], None],
) -> ToyLLMTrainingResult:
    """Train the toy LLM on the training sentences' text and write its card."""
    with _quiet_transformers():
        result = train_toy_llm(
            layout.llm,
            train,
            card_name=LLM_CARD,
            config=ToyLLMTrainingConfig(steps=steps, seed=seed),
            log=log,
            log_every=LLM_LOG_EVERY,
        )
    write_card_file(layout.cards / "toy_llm.yaml", [result.llm.card])
    return result


def llm_card(layout: QuickstartLayout) -> dict[str, object]:
    """The toy LLM's card as written by :func:`build_toy_llm`."""
    return read_card(layout.cards / "toy_llm.yaml")
