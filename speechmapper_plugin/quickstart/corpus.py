"""The quickstart's speech: templated sentences, synthesised per split."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from speechmapper_plugin.quickstart.layout import QuickstartError, QuickstartLayout
from speechmapper_plugin.tiny_assets import templated_sentences
from speechmapper_plugin.tiny_assets.speech import synthesize_corpus

SPLITS: Final = ("train", "dev")

MIN_TEMPLATED: Final = 320
"""Sentences the tokenizer sees at least (as many as the test tokenizer)."""


def draw_transcripts(
    num_train: int, num_dev: int, *, seed: int
) -> tuple[list[str], dict[str, list[str]]]:
    """Templated sentences for the tokenizer, and distinct ones to speak.

    :returns: The tokenizer's sentences, and split -> transcripts (a
        prefix of the tokenizer's distinct sentences: every spoken word is one
        the tokenizer learned).
    """
    total = num_train + num_dev
    text = templated_sentences(max(MIN_TEMPLATED, 4 * total), seed)
    distinct = list(dict.fromkeys(text))
    if len(distinct) < total:
        raise QuickstartError(
            f"Only {len(distinct)} distinct sentences came out of the templates; ask for fewer than {total} utterances."
        )
    return text, {"train": distinct[:num_train], "dev": distinct[num_train:total]}


def synthesize_splits(
    layout: QuickstartLayout, transcripts: dict[str, list[str]]
) -> dict[str, Path]:
    """Speak each split into ``layout.corpus``; one manifest per split, audio
    ids prefixed by the split so ids are unique across feature stores."""
    return {
        split: synthesize_corpus(
            layout.corpus,
            sentences,
            manifest_name=layout.manifest(split).name,
            id_prefix=f"{split}_",
        )
        for split, sentences in transcripts.items()
    }
