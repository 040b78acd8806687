"""A small synthesised speech corpus, its feature store and a stage-1 run.

The sentences are the templated English the tiny tokenizers were trained on,
spoken slowly enough that every transcript fits the tiny projector's output
(6.25 positions per second). The held-out utterances are other sentences in a
voice no training utterance has (``DEV_VOICES``). One extra row pairs a short
recording with a long transcript, which stage 1 must skip (counted).

The shared stage-1 run trains on the training utterances only (and the
unusable row) and validates on the held-out ones, so that stage 2 and
generation see held-out speech the projector never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechmapper_plugin import tiny_assets
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.tiny_assets.speech import DEV_VOICES
from tests.support.audio import synthesize_corpus
from tests.support.cards import SessionCards
from tests.support.llm import training_sentences
from tests.support.recipes import REPO, run_recipe
from tests.support.splits import copy_utterances, shuffled_transcripts

NUM_TRAIN = 40
NUM_HELD_OUT = 16

STAGE1_STEPS = 600
"""Steps of the shared stage-1 run. At 300 the tiny projector is still on its
way down and the fall of ``mse_word`` depends on the seed (2.8x to 9x over 12
seeds); at 600 the five seeds tried, the four failing ones among them, end
130x to 260x below step 0."""


@dataclass(frozen=True)
class SpeechCorpus:
    manifest: Path
    features: Path
    """The feature store directory (every utterance)."""

    train_features: Path
    """A store of the training utterances and the unusable row."""

    held_out_features: Path
    """A store of the held-out utterances."""

    train_ids: list[str]
    held_out_ids: list[str]
    untrainable_id: str


def corpus_sentences() -> list[str]:
    return training_sentences(400)[80 : 80 + NUM_TRAIN + NUM_HELD_OUT]


def build_speech_corpus(root: Path, cards: SessionCards) -> SpeechCorpus:
    sentences = corpus_sentences()
    manifest = synthesize_corpus(root, sentences[:NUM_TRAIN], speed=110)
    held_out = tiny_assets.synthesize_corpus(
        root,
        sentences[NUM_TRAIN:],
        manifest_name="held_out.tsv",
        id_prefix="held",
        voices=DEV_VOICES,
        words_per_minute=(110,),
    )

    first = manifest.read_text().splitlines()[1].split("\t")
    with manifest.open("a") as fp:
        fp.writelines(line + "\n" for line in held_out.read_text().splitlines()[1:])
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

    train_ids = [f"utt{i:05d}" for i in range(NUM_TRAIN)]
    held_out_ids = [f"held{i:05d}" for i in range(NUM_HELD_OUT)]
    store = FeatureStore(out / "features")
    return SpeechCorpus(
        manifest=manifest,
        features=out / "features",
        train_features=copy_utterances(store, root / "train", [*train_ids, "dense"]),
        held_out_features=copy_utterances(store, root / "held_out", held_out_ids),
        train_ids=train_ids,
        held_out_ids=held_out_ids,
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


def shuffled_control_store(corpus: SpeechCorpus, out: Path) -> Path:
    """The training utterances' features, each with another one's transcript
    (:func:`~tests.support.splits.shuffled_transcripts`): a control trained
    on it learns what the real pairs teach except the speech-text link."""
    store = FeatureStore(corpus.train_features)
    ids = corpus.train_ids
    return copy_utterances(
        store, out, ids, transcripts=shuffled_transcripts(store, ids)
    )


def run_stage1(
    out_root: Path,
    corpus: SpeechCorpus,
    cards: SessionCards,
    *,
    train_features: Path | None = None,
) -> Path:
    """``STAGE1_STEPS`` on the training store (or ``train_features``, e.g. a
    control), validating on it and on the held-out store; writes
    ``out_root/stage1``."""
    out = out_root / "stage1"
    train = corpus.train_features if train_features is None else train_features
    run_recipe(
        "stage1",
        out,
        *stage1_args(
            train,
            cards,
            f"dataset.config_overrides.splits={{train: [{train}], dev: [{corpus.held_out_features}]}}",
            "dataset.valid_splits=[train,dev]",
            f"regime.num_steps={STAGE1_STEPS}",
        ),
    )
    return out
