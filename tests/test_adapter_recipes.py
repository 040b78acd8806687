"""Stage 1 and stage 2 train every adapter family on the tiny corpus."""

from __future__ import annotations

import glob
import subprocess
from pathlib import Path

import pytest
import torch

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_asr_examples,
    write_instructions,
)
from speechmapper_plugin.llm import load_target_llm_embeddings
from tests.support.audio import has_espeak
from tests.support.cards import SessionCards
from tests.support.corpus import SpeechCorpus, stage1_args
from tests.support.recipes import REPO, read_metrics, run_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox"),
]

STEPS = 60


def run_adapter_stage1(
    out: Path, arch: str, corpus: SpeechCorpus, cards: SessionCards
) -> Path:
    overrides = [
        "model.family=speech_adapter",
        f"model.arch={arch}",
        f"regime.num_steps={STEPS}",
        f"regime.validate_every_n_steps={STEPS}",
        f"regime.checkpoint_every_n_steps={STEPS}",
    ]
    if arch.startswith("ctc_compression"):
        vocab = load_target_llm_embeddings(cards.llms.llama_card).embeddings.size(0)
        overrides.append(f"model.config_overrides={{ctc_vocab_size: {vocab}}}")
    run_recipe("stage1", out, *stage1_args(corpus.features, cards, *overrides))
    return out


@pytest.mark.parametrize(
    "arch",
    [
        "base_tiny",
        "conv_tiny",
        "wlq_former_tiny",
        "qformer_tiny",
        "cif_tiny",
        "ctc_compression_tiny",
    ],
)
def test_stage1_trains_the_adapter(
    arch: str,
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
) -> None:
    out = run_adapter_stage1(tmp_path / "s1", arch, speech_corpus, test_cards)
    valid = read_metrics(out, "valid/train")
    first, last = valid[0], valid[-1]
    assert last["Step"] == STEPS
    assert last["mse_word"] < 0.5 * first["mse_word"], (first, last)
    assert "embedding_wer" in last
    if arch.startswith("cif"):
        assert last["quantity"] < first["quantity"]
    if arch.startswith("ctc"):
        assert last["ctc"] < first["ctc"]
    card = (out / "checkpoints/model.yaml").read_text()
    assert "speech_adapter" in card and test_cards.llms.llama_card in card


def asr_instructions(tmp_path: Path, corpus: SpeechCorpus) -> tuple[Path, Path]:
    """ASR instructions of the corpus's training and held-out utterances."""
    store = FeatureStore(corpus.features)
    records = {
        e.id: SpeechRecord(id=e.id, transcript=e.transcript, lang=e.lang)
        for e in store.entries
    }
    train = tmp_path / "train.jsonl"
    dev = tmp_path / "dev.jsonl"
    write_instructions(
        train,
        build_asr_examples((records[i] for i in corpus.train_ids), pool="train"),
    )
    write_instructions(
        dev,
        build_asr_examples((records[i] for i in corpus.held_out_ids), pool="eval"),
    )
    return train, dev


# One variable-length adapter: a fixed-rate one goes through stage 2 exactly as
# the SpeechMapper projector does (tests/test_stage2_recipe.py), and each run
# costs about two minutes of the suite's budget.
@pytest.mark.parametrize("arch", ["cif_tiny"])
def test_stage2_tunes_the_adapter_and_saves_only_it(
    arch: str,
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
) -> None:
    stage1 = run_adapter_stage1(tmp_path / "s1", arch, speech_corpus, test_cards)
    train, dev = asr_instructions(tmp_path, speech_corpus)
    out = tmp_path / "s2"
    run_recipe(
        "stage2",
        out,
        "--config-file",
        str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "--config",
        f"common.assets.prev_checkpoint_dir={stage1 / 'checkpoints'}",
        f"llm.name={test_cards.llms.llama_card}",
        f"dataset.config_overrides={{splits: {{train: [{train}], dev: [{dev}]}}, feature_stores: [{speech_corpus.features}]}}",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
        "regime.num_steps=30",
        "regime.validate_every_n_steps=30",
        "regime.checkpoint_every_n_steps=30",
    )
    valid = read_metrics(out, "valid/dev")
    assert valid[-1]["ce"] < valid[0]["ce"], (valid[0], valid[-1])
    (path,) = glob.glob(str(out / "checkpoints/step_30/model/**/*.pt"), recursive=True)
    state = torch.load(path, weights_only=True)
    assert state and all(
        k.split(".")[0]
        in {
            "input_proj",
            "frame_pos",
            "pre_encoder",
            "length_adapter",
            "post_pos",
            "post_encoder",
            "final_proj",
        }
        for k in state
    ), sorted(state)[:5]


def fresh_ctc_stage2(
    out: Path,
    corpus: SpeechCorpus,
    cards: SessionCards,
    ctc_vocab_size: int,
    *,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """The grid's ``stage2_only`` protocol on a ``ctc_compression`` adapter
    (Gaido et al.'s averaging): a fresh one trained by stage 2 alone, CE only."""
    train, dev = asr_instructions(out.parent, corpus)
    return run_recipe(
        "stage2",
        out,
        "--config-file",
        str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "--config",
        "model.name=null",
        "model.family=speech_adapter",
        "model.arch=ctc_compression_tiny",
        f"model.config_overrides={{ctc_vocab_size: {ctc_vocab_size}, ctc_merge: average}}",
        "loss.sigma=0.0",
        f"llm.name={cards.llms.llama_card}",
        f"dataset.config_overrides={{splits: {{train: [{train}], dev: [{dev}]}}, feature_stores: [{corpus.features}]}}",
        f"common.assets.extra_paths=[{cards.card_dir}]",
        "regime.num_steps=30",
        "regime.validate_every_n_steps=30",
        "regime.checkpoint_every_n_steps=30",
        check=check,
    )


def test_stage2_refuses_a_fresh_ctc_head_of_another_vocabulary(
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
) -> None:
    vocab = load_target_llm_embeddings(test_cards.llms.llama_card).embeddings.size(0)
    refused = fresh_ctc_stage2(
        tmp_path / "s2", speech_corpus, test_cards, vocab + 1, check=False
    )
    assert refused.returncode != 0
    assert f"ctc_vocab_size: {vocab}" in refused.stdout + refused.stderr


def test_stage2_alone_trains_a_fresh_ctc_compression_head(
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
) -> None:
    """CE through the LLM plus the head's CTC loss (``loss.adapter_ctc_weight``)
    train a fresh ``ctc_compression`` adapter in stage 2 alone."""
    vocab = load_target_llm_embeddings(test_cards.llms.llama_card).embeddings.size(0)
    out = tmp_path / "s2"
    fresh_ctc_stage2(out, speech_corpus, test_cards, vocab)
    valid = read_metrics(out, "valid/dev")
    first, last = valid[0], valid[-1]
    assert last["Step"] == 30
    assert last["ctc"] < first["ctc"], (first, last)
    assert last["ce"] < first["ce"], (first, last)
    card = (out / "checkpoints/model.yaml").read_text()
    assert "ctc_merge: average" in card and test_cards.llms.llama_card in card
