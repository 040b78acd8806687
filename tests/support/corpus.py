"""A small synthesised speech corpus, its feature store and a stage-1 run.

The sentences are the templated English the tiny tokenizers were trained on,
spoken slowly enough that every transcript fits the tiny projector's output
(6.25 positions per second). One extra row pairs a short recording with a long
transcript, which stage 1 must skip (counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.audio import synthesize_corpus
from tests.support.cards import SessionCards
from tests.support.llm import training_sentences
from tests.support.recipes import REPO, run_recipe

NUM_TRAIN = 40
NUM_HELD_OUT = 8

STAGE1_STEPS = 600
"""Steps of the shared stage-1 run. At 300 the tiny projector is still on its
way down and the fall of ``mse_word`` depends on the seed (2.8x to 9x over 12
seeds); at 600 the five seeds tried, the four failing ones among them, end
130x to 260x below step 0."""


@dataclass(frozen=True)
class SpeechCorpus:
    manifest: Path
    features: Path
    """The feature store directory."""

    train_ids: list[str]
    held_out_ids: list[str]
    untrainable_id: str


def corpus_sentences() -> list[str]:
    return training_sentences(400)[80 : 80 + NUM_TRAIN + NUM_HELD_OUT]


def build_speech_corpus(root: Path, cards: SessionCards) -> SpeechCorpus:
    sentences = corpus_sentences()
    manifest = synthesize_corpus(root, sentences, speed=110)

    first = manifest.read_text().splitlines()[1].split("\t")
    with manifest.open("a") as fp:
        long_text = " ".join(sentences[:3])
        fp.write("\t".join(["dense", first[1], first[2], long_text, "en"]) + "\n")

    out = root / "extract"
    run_recipe(
        "extract_features",
        out,
        "--config-file",
        str(REPO / "recipes/extract_features/configs/tiny.yaml"),
        "--config",
        "model.name=test_sm4t_hf",
        f"dataset.config_overrides.manifests.train={manifest}",
        f"common.assets.extra_paths=[{cards.card_dir}]",
    )

    ids = [f"utt{i:05d}" for i in range(len(sentences))]
    return SpeechCorpus(
        manifest=manifest,
        features=out / "features",
        train_ids=ids[:NUM_TRAIN],
        held_out_ids=ids[NUM_TRAIN:],
        untrainable_id="dense",
    )


def stage1_args(store: Path, cards: SessionCards, *overrides: str) -> list[str]:
    return [
        "--config-file",
        str(REPO / "recipes/stage1/configs/tiny.yaml"),
        "--config",
        f"target_llm.name={cards.llms.llama_card}",
        f"dataset.config_overrides.splits={{train: [{store}]}}",
        f"common.assets.extra_paths=[{cards.card_dir}]",
        *overrides,
    ]


def run_stage1(out_root: Path, corpus: SpeechCorpus, cards: SessionCards) -> Path:
    out = out_root / "stage1"
    run_recipe(
        "stage1",
        out,
        *stage1_args(corpus.features, cards, f"regime.num_steps={STAGE1_STEPS}"),
    )
    return out
