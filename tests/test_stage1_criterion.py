"""Stage 1's one criterion, as its training and its validation units call it."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from fairseq2.gang import create_fake_gangs
from fairseq2.metrics import MetricBag, sync_and_compute_metrics

from recipes.common import CriterionEvalUnit, CriterionTrainUnit, StageCriterion
from recipes.stage1.criterion import Stage1Criterion
from speechmapper_plugin.datasets.speech_features import SpeechFeaturesBatch
from speechmapper_plugin.llm import load_target_llm_embeddings
from speechmapper_plugin.losses import Stage1Weights, stage1_loss
from speechmapper_plugin.models.adapters import create_speech_adapter_model
from speechmapper_plugin.models.adapters.config import _tiny
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


def unit_values(
    criterion: StageCriterion[Any], batch: Any, *, valid: bool
) -> dict[str, object]:
    """One batch through the criterion's validation (``valid``) or training
    unit: the metric values as the trainer computes them, any warning an error
    (torchmetrics warns about a metric no batch updated)."""
    unit = (
        CriterionEvalUnit(criterion, "dev") if valid else CriterionTrainUnit(criterion)
    )
    bag = MetricBag(torch.device("cpu"))
    unit.prepare_metric_bag(bag)
    unit.process_batch(batch, bag)
    gang = create_fake_gangs(torch.device("cpu")).root
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = sync_and_compute_metrics(bag, gang)
    assert values is not None
    return values


def tiny_adapter(kind: str) -> torch.nn.Module:
    torch.manual_seed(4)
    vocab = load_target_llm_embeddings(LLAMA_CARD).num_embeddings
    config = _tiny(kind, ctc_vocab_size=vocab)  # type: ignore[arg-type]
    return create_speech_adapter_model(config)


class Wrapper(torch.nn.Module):
    """Holds the model as a child, as DDP does."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: object, **kwargs: object) -> object:
        return self.module(*args, **kwargs)


def run_units(
    model: torch.nn.Module, weights: Stage1Weights
) -> tuple[dict[str, object], dict[str, object]]:
    """One batch through the training and the validation unit: their values."""
    targets = load_target_llm_embeddings(LLAMA_CARD, dtype=torch.float32)
    features = torch.randn(2, 100, 64, generator=torch.Generator().manual_seed(2))
    train, valid = (
        unit_values(
            Stage1Criterion(model, targets, weights, score_embeddings=valid),
            batch_of([0, 1], features),
            valid=valid,
        )
        for valid in (False, True)
    )
    return train, valid


def test_a_projector_without_auxiliary_losses_logs_none() -> None:
    """The paper projector has no CTC or quantity loss: no ``ctc: 0 |
    quantity: 0`` in its log lines, no torchmetrics warning."""
    for values in run_units(tiny_projector(), Stage1Weights(alpha=9.0)):
        assert "ctc" not in values and "quantity" not in values
        assert "mse_pad" in values  # outputs padded past the words
        assert float(values["loss"]) > 0.0  # type: ignore[arg-type]


def test_the_embedding_ctc_loss_is_logged_when_weighted() -> None:
    projector = tiny_projector()
    weights = Stage1Weights(alpha=9.0, ctc_weight=0.5)
    train, valid = run_units(projector, weights)
    assert "quantity" not in train and "quantity" not in valid
    features = torch.randn(2, 100, 64, generator=torch.Generator().manual_seed(2))
    loss = stage1_loss(
        projector,
        batch_of([0, 1], features),
        targets=load_target_llm_embeddings(LLAMA_CARD, dtype=torch.float32),
        weights=weights,
    )
    assert loss.ctc is not None
    assert float(train["ctc"]) == pytest.approx(loss.ctc.total.item())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "logged"), [("ctc_compression", "ctc"), ("cif", "quantity")]
)
def test_a_variable_length_adapter_logs_its_own_loss_only(
    kind: str, logged: str
) -> None:
    """Through a DDP-like wrapper too; a CIF adapter has no CTC head, a CTC
    compression adapter no quantity loss."""
    adapter = tiny_adapter(kind)
    weights = Stage1Weights(alpha=9.0, per_token=True)
    other = {"ctc", "quantity"} - {logged}
    for values in run_units(Wrapper(adapter), weights):
        assert logged in values and not other & set(values)
        # One output per token: no pad positions, so no MSE_pad to log.
        assert "mse_pad" not in values and "mse_word" in values
        assert float(values[logged]) > 0.0  # type: ignore[arg-type]
