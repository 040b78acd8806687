"""Training and validation units of stage 2."""

from __future__ import annotations

import torch
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.evaluator import EvalUnit
from fairseq2.recipe.trainer import TrainUnit
from torch import Tensor
from torch.nn import Module
from typing_extensions import final, override

from recipes.stage1.units import (
    add_shared_metrics,
    drop_non_finite_rows,
    graph_zero,
    update_mse_metrics,
)
from speechmapper_plugin.datasets.instructions import InstructionBatch
from speechmapper_plugin.llm import TargetLLMEmbeddings
from speechmapper_plugin.losses import Stage2Loss, stage2_loss


@final
class Stage2Objective:
    """``(1−σ)·CE + σ·MSE`` of the projector + frozen LLM on a batch (see
    :mod:`speechmapper_plugin.losses.stage2`)."""

    def __init__(
        self,
        projector: Module,
        llm: TransformerLM,
        targets: TargetLLMEmbeddings,
        sigma: float,
        alpha: float,
        *,
        compute_all: bool = False,
    ) -> None:
        """:param targets: the MSE targets, built with stage 1's transcript
        policy; the batches' transcript ids come from its ``encode``."""
        self.projector = projector
        self.compute_all = compute_all
        self.llm = llm
        self.targets = targets
        self.sigma = sigma
        self.alpha = alpha

    def __call__(self, batch: InstructionBatch) -> Stage2Loss:
        return stage2_loss(
            self.projector,
            self.llm,
            batch.features,
            batch.feature_lens,
            batch.prefix_ids,
            batch.suffix_ids,
            batch.response_ids,
            batch.transcript_ids,
            targets=self.targets,
            sigma=self.sigma,
            alpha=self.alpha,
            compute_all=self.compute_all,
        )


def add_metrics(metric_bag: MetricBag) -> None:
    add_shared_metrics(metric_bag)
    metric_bag.add("ce", Mean())
    metric_bag.add("mse", Mean())
    metric_bag.add("num_response_tokens", Sum())
    metric_bag.add("num_mse_examples", Sum())


@torch.inference_mode()
def update_metrics(
    metric_bag: MetricBag, batch: InstructionBatch, loss: Stage2Loss
) -> None:
    n = batch.batch_size
    metric_bag.get("loss", Mean).update(loss.total.detach(), weight=n)
    if loss.ce is not None:
        metric_bag.get("ce", Mean).update(
            loss.ce.detach(), weight=loss.num_response_tokens
        )
    if loss.mse is not None:
        metric_bag.get("mse", Mean).update(
            loss.mse.total.detach(), weight=loss.num_mse_rows
        )
        update_mse_metrics(metric_bag, loss.mse)
    metric_bag.get("num_examples", Sum).update(n)
    metric_bag.get("num_response_tokens", Sum).update(loss.num_response_tokens)
    metric_bag.get("num_mse_examples", Sum).update(loss.num_mse_rows)


@final
class Stage2TrainUnit(TrainUnit[InstructionBatch]):
    def __init__(self, objective: Stage2Objective) -> None:
        self._objective = objective

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        add_metrics(metric_bag)

    @override
    def process_batch(
        self, batch: InstructionBatch, metric_bag: MetricBag
    ) -> tuple[Tensor, int | None]:
        batch, num_bad = drop_non_finite_rows(batch)
        metric_bag.get("num_skipped_non_finite", Sum).update(num_bad)

        if batch.batch_size == 0:
            return graph_zero(self._objective.projector), None

        loss = self._objective(batch)
        update_metrics(metric_bag, batch, loss)
        # A mean over the batch; the trainer averages accumulated batches.
        return loss.total, None


@final
class Stage2ValidUnit(EvalUnit[InstructionBatch]):
    """CE and MSE on held-out instructions (both terms, whatever σ)."""

    def __init__(self, objective: Stage2Objective, name: str) -> None:
        self._objective = objective
        self._name = name

    @property
    @override
    def name(self) -> str | None:
        return self._name

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        add_metrics(metric_bag)

    @override
    @torch.inference_mode()
    def process_batch(self, batch: InstructionBatch, metric_bag: MetricBag) -> None:
        batch, num_bad = drop_non_finite_rows(batch)
        metric_bag.get("num_skipped_non_finite", Sum).update(num_bad)

        if batch.batch_size > 0:
            update_metrics(metric_bag, batch, self._objective(batch))
