"""The quickstart's tiny models and their cards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from speechmapper_plugin.data.instructions.prompts import (
    ASR_EVAL_PROMPTS,
    ASR_TRAIN_PROMPTS,
)
from speechmapper_plugin.quickstart.layout import QuickstartLayout
from speechmapper_plugin.tiny_assets import (
    INSTRUCTION_SENTENCES,
    TinyLLM,
    write_card_file,
    write_tiny_llama3,
    write_tiny_sm4t,
)

SFM_CARD: Final = "quickstart_sm4t_v2_tiny"
LLM_CARD: Final = "quickstart_llama3_tiny"

TOKENIZER_VOCAB_SIZE: Final = 640
"""Enough merges for every word of the templated corpus and of the stage-2
prompts to be one token: a transcript is about ten tokens."""

PROMPT_REPEATS: Final = 5
"""How often each stage-2 prompt appears in the tokenizer's training text."""


@dataclass(frozen=True)
class QuickstartAssets:
    sfm_card: str
    sfm_dir: Path
    llm: TinyLLM
    card_file: Path


def tokenizer_corpus(transcripts: Sequence[str]) -> list[str]:
    """What the tiny tokenizer learns from: the transcripts, the stage-2
    instruction prompts and the chat wording."""
    prompts = [*ASR_TRAIN_PROMPTS, *ASR_EVAL_PROMPTS, *INSTRUCTION_SENTENCES]
    return [*transcripts, *prompts * PROMPT_REPEATS]


def build_assets(
    layout: QuickstartLayout, tokenizer_text: Sequence[str], *, seed: int
) -> QuickstartAssets:
    """Write the tiny SeamlessM4T-v2 and the tiny Llama 3 with their cards
    into ``layout.cards``."""
    sfm_dir = layout.assets / "sm4t_v2_tiny"
    sfm = write_tiny_sm4t(sfm_dir, card_name=SFM_CARD, seed=seed)

    llm = write_tiny_llama3(
        layout.assets / "llama3_tiny",
        card_name=LLM_CARD,
        sentences=tokenizer_text,
        seed=seed + 1,
        tokenizer_vocab_size=TOKENIZER_VOCAB_SIZE,
    )

    card_file = write_card_file(layout.cards / "quickstart.yaml", [sfm, llm.card])

    return QuickstartAssets(
        sfm_card=SFM_CARD, sfm_dir=sfm_dir, llm=llm, card_file=card_file
    )
