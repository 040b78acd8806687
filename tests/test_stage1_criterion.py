"""Stage 1's one criterion, as its training and its validation units call it."""

from __future__ import annotations

import pytest
import torch
from fairseq2.metrics import MetricBag

from recipes.common import CriterionEvalUnit, CriterionTrainUnit
from recipes.stage1.criterion import Stage1Criterion
from speechmapper_plugin.datasets.speech_features import SpeechFeaturesBatch
from speechmapper_plugin.llm import load_target_llm_embeddings
from speechmapper_plugin.losses import Stage1Weights, stage1_loss
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from tests.support.llm import LLAMA_CARD

TRANSCRIPTS = ["the cat sat on the mat", "a dog ran"]


def tiny_projector() -> torch.nn.Module:
    torch.manual_seed(1)
    hub = get_speechmapper_model_hub()
    return hub.create_new_model(hub.get_arch_config("tiny"), device=torch.device("cpu"))


def batch_of(rows: list[int], features: torch.Tensor) -> SpeechFeaturesBatch:
    targets = load_target_llm_embeddings(LLAMA_CARD, dtype=torch.float32)
    ids = [targets.encode(TRANSCRIPTS[i]) for i in rows]
    target_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    target_lens = torch.tensor([len(t) for t in ids])
    return SpeechFeaturesBatch(
        features=features[rows],
        feature_lens=torch.tensor([features.size(1)] * len(rows)),
        target_ids=target_ids,
        target_lens=target_lens,
        ids=[f"u{i}" for i in rows],
        transcripts=[TRANSCRIPTS[i] for i in rows],
    )


def test_train_and_valid_units_share_the_loss_and_skip_non_finite_rows() -> None:
    projector = tiny_projector()
    targets = load_target_llm_embeddings(LLAMA_CARD, dtype=torch.float32)
    weights = Stage1Weights(alpha=9.0)
    features = torch.randn(2, 100, 64, generator=torch.Generator().manual_seed(2))
    features[1, 7, 3] = float("nan")

    expected = stage1_loss(
        projector, batch_of([0], features), targets=targets, weights=weights
    ).total.detach()

    train = CriterionTrainUnit(Stage1Criterion(projector, targets, weights))
    train_bag = MetricBag(torch.device("cpu"))
    train.prepare_metric_bag(train_bag)
    loss, num_targets = train.process_batch(batch_of([0, 1], features), train_bag)
    torch.testing.assert_close(loss, expected)
    assert num_targets is None and loss.requires_grad

    valid = CriterionEvalUnit(
        Stage1Criterion(projector, targets, weights, score_embeddings=True),
        "dev",
    )
    valid_bag = MetricBag(torch.device("cpu"))
    valid.prepare_metric_bag(valid_bag)
    valid.process_batch(batch_of([0, 1], features), valid_bag)

    for bag in (train_bag, valid_bag):
        assert int(bag.metrics["num_skipped_non_finite"].compute()) == 1
        assert int(bag.metrics["num_examples"].compute()) == 1
        assert float(bag.metrics["loss"].compute()) == pytest.approx(expected.item())

    values: dict[str, object] = {k: m.compute() for k, m in valid_bag.metrics.items()}
    valid.process_metric_values(values)
    assert "embedding_wer" in values and "embedding_word_errors" not in values
    assert "cosine_word" not in train_bag.metrics

    # Every row bad: a zero loss that still reaches every parameter.
    loss, _ = train.process_batch(batch_of([1], features), train_bag)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in projector.parameters())
