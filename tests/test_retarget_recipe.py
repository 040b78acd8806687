"""A projector retargeted to another LLM, through the real recipes (issue 22):
stage 1 for a 64-d LLM, stage 1 for a 32-d LLM warm-started from it, then
export, stage 2 and evaluation (generation and scoring) of the retargeted
projector."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import torch
import yaml

from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_asr_examples,
    write_instructions,
)
from speechmapper_plugin.tiny_assets.cards import write_card_file
from speechmapper_plugin.tiny_assets.llama import TinyLlamaDims
from speechmapper_plugin.tiny_assets.llama3_llm import write_tiny_llama3
from tests.support.cards import SessionCards
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.llm import training_sentences
from tests.support.recipes import REPO, run_module, run_recipe

pytestmark = pytest.mark.slow

NARROW_LLM = "test_llama_32"


@pytest.fixture(scope="module")
def narrow_cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A card directory with a 32-d tiny Llama (the session's are 64-d)."""
    root = tmp_path_factory.mktemp("narrow_llm")
    narrow = write_tiny_llama3(
        root / "narrow_llama",
        card_name=NARROW_LLM,
        sentences=training_sentences(),
        seed=7,
        dims=TinyLlamaDims(model_dim=32, intermediate_size=128),
    )
    write_card_file(root / "cards" / "narrow.yaml", [narrow.card])
    return root / "cards"


def model_state(out: Path, step: int) -> dict[str, torch.Tensor]:
    (path,) = glob.glob(
        str(out / f"checkpoints/step_{step}/model/**/*.pt"), recursive=True
    )
    state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return state


def test_retargeted_projector_through_export_stage2_and_evaluation(
    test_cards: SessionCards, narrow_cards: Path, tmp_path: Path
) -> None:
    sentences = training_sentences(400)[120:132]
    utterances = [
        Utterance(
            f"u{i}", torch.randn(90, 64, generator=torch.Generator().manual_seed(i)), s
        )
        for i, s in enumerate(sentences)
    ]
    # Recorded as the tiny encoder's layer 1, which generation then loads.
    store = write_feature_store(
        tmp_path / "store", utterances, encoder="test_sm4t_hf", layer=1
    )

    assets = f"common.assets.extra_paths=[{test_cards.card_dir},{narrow_cards}]"

    def stage1(out: Path, llm: str, *overrides: str) -> None:
        run_recipe(
            "stage1",
            out,
            "--config-file",
            str(REPO / "recipes/stage1/configs/tiny.yaml"),
            "--config",
            f"target_llm.name={llm}",
            f"dataset.config_overrides.splits={{train: [{store}]}}",
            assets,
            "dataset.batch_size=6",
            "lr_scheduler.config.num_warmup_steps=2",
            "regime.validate_at_start=false",
            "regime.publish_metrics_every_n_steps=1",
            *overrides,
        )

    source = tmp_path / "source"
    stage1(
        source,
        test_cards.llms.llama_card,
        "regime.num_steps=6",
        "regime.validate_every_n_steps=6",
        "regime.checkpoint_every_n_steps=6",
    )

    retargeted = tmp_path / "retargeted"
    stage1(
        retargeted,
        NARROW_LLM,
        "model.config_overrides.output_dim=32",
        f"warm_start.checkpoint={source}",
        "warm_start.freeze_loaded_steps=3",
        "regime.num_steps=6",
        "regime.validate_every_n_steps=3",
        "regime.checkpoint_every_n_steps=3",
        "regime.keep_last_n_checkpoints=2",
    )

    # The card names the new LLM; the projector config records the source.
    card = yaml.safe_load((retargeted / "checkpoints/model.yaml").read_text())
    assert card["model_config"]["target_llm"] == NARROW_LLM
    assert card["model_config"]["output_dim"] == 32
    record = card["model_config"]["warm_started_from"]
    assert record["target_llm"] == test_cards.llms.llama_card
    assert record["step"] == 6
    assert record["checkpoint"].endswith(".pt") and "step_6" in record["checkpoint"]
    assert record["fresh_tensors"] == ["final_proj.bias", "final_proj.weight"]
    assert record["freeze_loaded_steps"] == 3
    assert record["keep_fresh"] == []

    # Frozen for 3 steps: the trunk is still the source's; the output layer
    # has its new width. Then the trunk trains.
    theirs = model_state(source, 6)
    at_3, at_6 = model_state(retargeted, 3), model_state(retargeted, 6)
    assert at_3["final_proj.weight"].shape == (32, 64)
    trunk = [k for k in theirs if not k.startswith("final_proj.")]
    assert len(trunk) == record["num_loaded_tensors"]
    for key in trunk:
        assert torch.equal(at_3[key], theirs[key]), key
    assert any(not torch.equal(at_6[k], theirs[k]) for k in trunk)
    assert not torch.equal(at_6["final_proj.weight"], at_3["final_proj.weight"])

    # Export.
    export_dir = tmp_path / "export"
    run_module(
        "speechmapper_plugin.export",
        str(retargeted),
        str(export_dir),
        "--name",
        "retargeted",
    )
    summary = json.loads((export_dir / "config.json").read_text())
    assert summary["target_llm"]["card"] == NARROW_LLM
    # What it was retargeted from travels with it: config.json and the card
    # fairseq2 loads it by.
    assert summary["projector"]["warm_started_from"] == record
    export_card = yaml.safe_load((export_dir / "card.yaml").read_text())
    assert export_card["model_config"]["warm_started_from"] == record

    # Stage 2 with the 32-d LLM.
    records = [
        SpeechRecord(id=u.id, transcript=u.transcript, lang="en") for u in utterances
    ]
    train_jsonl, dev_jsonl = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    write_instructions(train_jsonl, build_asr_examples(records[:8], pool="train"))
    write_instructions(dev_jsonl, build_asr_examples(records[8:], pool="eval"))
    stage2 = tmp_path / "stage2"
    run_recipe(
        "stage2",
        stage2,
        "--config-file",
        str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "--config",
        f"common.assets.prev_checkpoint_dir={retargeted / 'checkpoints'}",
        f"llm.name={NARROW_LLM}",
        f"dataset.config_overrides={{splits: {{train: [{train_jsonl}], dev: [{dev_jsonl}]}}, feature_stores: [{store}]}}",
        assets,
        "regime.num_steps=2",
        "regime.publish_metrics_every_n_steps=1",
        "regime.validate_every_n_steps=2",
        "regime.checkpoint_every_n_steps=2",
        "lr_scheduler.config.num_warmup_steps=1",
    )

    # Stage 2 keeps the record in its checkpoint card.
    stage2_card = yaml.safe_load((stage2 / "checkpoints/model.yaml").read_text())
    assert stage2_card["model_config"]["warm_started_from"] == record

    # Evaluation (generation, then scoring) of the stage-2 projector on the
    # cached features.
    out = tmp_path / "evaluate"
    run_recipe(
        "evaluate",
        out,
        "--config-file",
        str(REPO / "recipes/evaluate/configs/tiny.yaml"),
        "--config",
        f"common.assets.prev_checkpoint_dir={stage2 / 'checkpoints'}",
        f"llm.name={NARROW_LLM}",
        f"input.instructions={dev_jsonl}",
        f"input.feature_store={store}",
        "generation.max_new_tokens=4",
        "scoring.comet=false",
        assets,
    )
    hypotheses = (out / "hypotheses.jsonl").read_text().splitlines()
    assert len(hypotheses) == len(records[8:])
    summary = json.loads((out / "summary.json").read_text())
    assert "asr" in json.dumps(summary["metrics"])
