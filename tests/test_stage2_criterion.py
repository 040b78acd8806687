"""Stage 2's criterion registers the adapter-loss metrics only for a model
that has those losses: the paper projector's log lines carry no ``ctc: 0 |
quantity: 0`` and torchmetrics does not warn about never-updated metrics."""

from __future__ import annotations

import pytest
import torch

from recipes.stage2.criterion import Stage2Criterion
from speechmapper_plugin.losses import stage2_loss
from speechmapper_plugin.losses.adapter import AdapterLossWeights
from tests.test_stage1_criterion import Wrapper, unit_values
from tests.test_stage2_adapter_losses import fresh_adapter
from tests.test_stage2_loss import (
    instruction_batch,
    llm_targets,
    tiny_llm,
    tiny_projector,
)


def run_units(
    projector: torch.nn.Module, adapter_weights: AdapterLossWeights | None
) -> list[dict[str, object]]:
    """One batch through the training and the validation unit: their values."""
    llm = tiny_llm()
    targets = llm_targets(llm)
    return [
        unit_values(
            Stage2Criterion(
                projector,
                llm,  # type: ignore[arg-type]
                targets,
                sigma=0.5,
                alpha=9.0,
                compute_all=valid,
                adapter_weights=adapter_weights,
            ),
            instruction_batch(),
            valid=valid,
        )
        for valid in (False, True)
    ]


def test_the_paper_projector_logs_no_adapter_losses() -> None:
    for values in run_units(tiny_projector(), None):
        assert "ctc" not in values and "quantity" not in values
        assert "ce" in values and "mse" in values


def test_a_ctc_adapter_logs_its_ctc_loss() -> None:
    """Through a DDP-like wrapper; the value is the loss's CTC term (row 0,
    the only one with a transcript); no quantity: it has no CIF."""
    adapter = fresh_adapter("ctc_compression")
    weights = AdapterLossWeights(ctc=0.5)
    train, valid = run_units(Wrapper(adapter), weights)
    for values in (train, valid):
        assert "ctc" in values and "quantity" not in values
    llm = tiny_llm()
    loss = stage2_loss(
        adapter,
        llm,  # type: ignore[arg-type]
        instruction_batch(),
        targets=llm_targets(llm),
        sigma=0.5,
        alpha=9.0,
        adapter_weights=weights,
    )
    assert loss.adapter is not None and loss.adapter.ctc is not None
    assert float(train["ctc"]) == pytest.approx(loss.adapter.ctc.total.item())  # type: ignore[arg-type]


def test_a_variable_length_adapter_without_its_losses_logs_none() -> None:
    """Stage 2 given no ``adapter_weights`` computes no adapter loss."""
    for values in run_units(fresh_adapter("cif"), None):
        assert "ctc" not in values and "quantity" not in values
