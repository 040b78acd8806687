"""Templated English for tiny tokenizers and synthesised speech.

A tokenizer trained on this text encodes a transcript such as "The old dog saw
a bird near the river." in about ten tokens, so that a few seconds of slow
synthesised speech (6.25 projector positions per second) can hold every token.
"""

from __future__ import annotations

import random
from typing import Final

NOUNS: Final = tuple(
    "cat dog bird fish horse child man woman teacher doctor farmer river house tree garden city road book letter song".split()
)
ADJECTIVES: Final = tuple(
    "old young big small red green quiet happy tired clever".split()
)
VERBS: Final = tuple("saw found heard followed painted visited watched helped".split())
PLACES: Final = (
    "near the river",
    "in the garden",
    "on the road",
    "at the house",
    "by the tree",
    "in the city",
)
TIMES: Final = ("today", "yesterday", "in the morning", "at night", "every day")

INSTRUCTION_SENTENCES: Final = (
    "Transcribe the audio.",
    "Repeat what was said.",
    "Write down what you hear.",
    "Translate the speech into German.",
    "Answer the question about the audio.",
    "You are a helpful assistant.",
    "The user asks and the assistant answers.",
    "The system gives the answer.",
)
"""Instruction and chat wording, so that prompts take few tokens too."""

INSTRUCTION_REPEATS: Final = 10
"""How often :data:`INSTRUCTION_SENTENCES` appear in :func:`training_sentences`."""


def templated_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` sentences like "A quiet farmer painted the river at night."

    Deterministic in ``seed``; the same sentence can appear more than once.
    """
    rng = random.Random(seed)

    sentences: list[str] = []
    while len(sentences) < count:
        subject = (
            f"{rng.choice(['The', 'A'])} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        )
        obj = f"{rng.choice(['the', 'a'])} {rng.choice(NOUNS)}"
        extra = rng.choice(PLACES + TIMES)
        sentences.append(f"{subject} {rng.choice(VERBS)} {obj} {extra}.")

    return sentences


def training_sentences(count: int = 400, seed: int = 0) -> list[str]:
    """A tokenizer-training corpus of ``count`` lines (at least the instruction
    block): the instruction wording :data:`INSTRUCTION_REPEATS` times, then
    :func:`templated_sentences`.

    Lines from index ``len(INSTRUCTION_SENTENCES) * INSTRUCTION_REPEATS`` on are
    transcripts the tokenizer has seen, ready to be spoken.
    """
    sentences = list(INSTRUCTION_SENTENCES) * INSTRUCTION_REPEATS
    sentences += templated_sentences(max(count - len(sentences), 0), seed)
    return sentences
