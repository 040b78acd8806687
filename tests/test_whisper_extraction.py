"""Whisper through the extraction recipe, and stage 1 reading its store unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.models.whisper_encoder import num_valid_positions
from tests.support.cards import SessionCards
from tests.support.corpus import SpeechCorpus, stage1_args
from tests.support.recipes import REPO, read_metrics, run_recipe


@pytest.fixture(scope="module")
def whisper_store(
    tmp_path_factory: pytest.TempPathFactory,
    speech_corpus: SpeechCorpus,
    test_cards: SessionCards,
) -> Path:
    out = tmp_path_factory.mktemp("whisper_extract")
    run_recipe(
        "extract_features",
        out,
        "--config-file",
        str(REPO / "recipes/extract_features/configs/tiny.yaml"),
        "--config",
        "model.name=test_whisper_hf",
        "features.layer=1",
        "features.layer_norm=false",
        "features.max_windows=4",
        f"dataset.config_overrides.manifests.train={speech_corpus.manifest}",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
    )
    return out / "features"


@pytest.mark.slow
def test_store_records_the_sfm_and_has_whisper_lengths(
    whisper_store: Path, speech_corpus: SpeechCorpus
) -> None:
    store = FeatureStore(whisper_store)
    meta = store.metadata

    assert (meta.encoder, meta.encoder_family) == ("test_whisper_hf", "whisper_encoder")
    assert (meta.layer, meta.layer_norm, meta.dim) == (1, False, 64)
    assert meta.frame_rate == 25.0 and meta.frame_averaging == 2

    manifest = speech_corpus.manifest
    header, *rows = manifest.read_text().splitlines()
    checked = 0
    for line in rows:
        row_id, _, samples = line.split("\t")[:3]
        if row_id not in speech_corpus.train_ids[:5]:
            continue
        num_samples = int(samples)
        # Utterances longer than the tiny arch's 1 s window are chunked.
        windows = [
            num_valid_positions(min(16_000, num_samples - s))
            for s in range(0, num_samples, 16_000)
        ]
        features = store.read(row_id)
        assert features.shape == (sum(windows) // 2, 64)
        assert torch.isfinite(features).all()
        checked += 1
    assert checked == 5


@pytest.mark.slow
def test_stage1_trains_on_a_whisper_store(
    whisper_store: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    out = tmp_path / "stage1"
    run_recipe(
        "stage1",
        out,
        *stage1_args(
            whisper_store,
            test_cards,
            "regime.num_steps=40",
            "regime.validate_every_n_steps=40",
            "lr_scheduler.config.num_warmup_steps=5",
        ),
    )
    valid = read_metrics(out, "valid/train")
    assert valid[-1]["Step"] == 40
    assert valid[-1]["mse_word"] < valid[0]["mse_word"]
