"""The quickstart's toy world: its sentences on disk and spoken per split.

Training speech rotates through many espeak-ng voices, speeds and pitches;
the dev split is spoken by a voice training never heard, and the test split
by another one (``HELDOUT_VOICES``), so evaluation measures held-out sentences
in a held-out voice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from speechmapper_plugin.quickstart.layout import SPLITS, QuickstartLayout
from speechmapper_plugin.tiny_assets.speech import (
    DEV_VOICES,
    HELDOUT_VOICES,
    TRAIN_VOICES,
    VARIED_PITCHES,
    VARIED_WORDS_PER_MINUTE,
    synthesize_corpus,
)
from speechmapper_plugin.tiny_assets.toy_world import (
    ParallelSentence,
    ToyWorld,
    ToyWorldSplits,
)

SPLIT_VOICES: Final = {
    "train": TRAIN_VOICES,
    "dev": DEV_VOICES,
    "test": HELDOUT_VOICES,
}


def write_world(
    layout: QuickstartLayout, seed: int, num_train: int, num_dev: int, num_test: int
) -> ToyWorldSplits:
    """Draw the toy world and write it to ``layout.world``."""
    splits = ToyWorld.generate(seed, num_train, num_dev, num_test)
    data = {
        split: [
            {"en": s.en, "fr": s.fr, "de": s.de, "template": s.template}
            for s in splits.split(split)
        ]
        for split in SPLITS
    }
    layout.world.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return splits


def read_world(layout: QuickstartLayout) -> ToyWorldSplits:
    data = json.loads(layout.world.read_text(encoding="utf-8"))
    parts = {
        split: tuple(ParallelSentence(**row) for row in data[split]) for split in SPLITS
    }
    return ToyWorldSplits(train=parts["train"], dev=parts["dev"], test=parts["test"])


def utterance_id(split: str, index: int) -> str:
    """The audio id of sentence ``index`` of ``split`` (unique across stores)."""
    return f"{split}_{index:05d}"


def synthesize_world(
    layout: QuickstartLayout, world: ToyWorldSplits
) -> dict[str, Path]:
    """Speak the English of every split into ``layout.corpus``; one manifest per split."""
    return {
        split: synthesize_corpus(
            layout.corpus,
            [s.en for s in world.split(split)],
            manifest_name=layout.manifest(split).name,
            id_prefix=f"{split}_",
            voices=SPLIT_VOICES[split],
            words_per_minute=VARIED_WORDS_PER_MINUTE,
            pitches=VARIED_PITCHES,
            num_workers=2,
        )
        for split in SPLITS
    }
