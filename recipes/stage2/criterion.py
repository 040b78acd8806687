"""Stage 2's criterion: the loss and metrics of the training and the
validation units (:class:`~recipes.common.CriterionTrainUnit`,
:class:`~recipes.common.CriterionEvalUnit`)."""

from __future__ import annotations

import torch
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.models.transformer_lm import TransformerLM
from torch import Tensor
from torch.nn import Module
from typing_extensions import final, override

from recipes.adapter_metrics import adapter_loss_metrics
from recipes.common import StageCriterion, update_mse_metrics
from speechmapper_plugin.datasets.instructions import InstructionBatch
from speechmapper_plugin.llm import TargetLLMEmbeddings
from speechmapper_plugin.losses import stage2_loss
from speechmapper_plugin.losses.adapter import AdapterLossWeights


@final
class Stage2Criterion(StageCriterion[InstructionBatch]):
    """``(1−σ)·CE + σ·MSE`` of the projector + frozen LLM on a batch (see
    :mod:`speechmapper_plugin.losses.stage2`); logs both terms, the parts of
    the MSE, the response tokens and the examples with an MSE term, and the
    adapter's own losses where it has them (``ctc``, ``quantity``)."""

    def __init__(
        self,
        projector: Module,
        llm: TransformerLM,
        targets: TargetLLMEmbeddings,
        *,
        sigma: float,
        alpha: float,
        compute_all: bool = False,
        adapter_weights: AdapterLossWeights | None = None,
    ) -> None:
        """:param targets: the MSE targets, built with stage 1's transcript
        policy; the batches' target ids come from its ``encode``.
        :param compute_all: compute both terms whatever σ (validation).
        :param adapter_weights: a variable-length adapter: also train its own
        losses (CTC head, CIF quantity)."""
        super().__init__(projector)
        self._llm = llm
        self._targets = targets
        self._sigma = sigma
        self._alpha = alpha
        self._compute_all = compute_all
        self._adapter_weights = adapter_weights
        # Only a trained variable-length adapter reports its own losses.
        self._aux_terms = (
            frozenset() if adapter_weights is None else adapter_loss_metrics(projector)
        )

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        super().prepare_metric_bag(metric_bag)
        metric_bag.add("ce", Mean())
        metric_bag.add("mse", Mean())
        metric_bag.add("num_response_tokens", Sum())
        metric_bag.add("num_mse_examples", Sum())
        for name in sorted(self._aux_terms):
            metric_bag.add(name, Mean())

    @override
    def _score(self, batch: InstructionBatch, metric_bag: MetricBag) -> Tensor:
        loss = stage2_loss(
            self._model,
            self._llm,
            batch,
            targets=self._targets,
            sigma=self._sigma,
            alpha=self._alpha,
            compute_all=self._compute_all,
            adapter_weights=self._adapter_weights,
        )
        with torch.inference_mode():
            if loss.ce is not None:
                metric_bag.get("ce", Mean).update(
                    loss.ce.detach(), weight=loss.num_response_tokens
                )
            if loss.mse is not None:
                metric_bag.get("mse", Mean).update(
                    loss.mse.total.detach(), weight=loss.num_mse_rows
                )
                update_mse_metrics(metric_bag, loss.mse)
            adapter = loss.adapter
            if adapter is not None and adapter.ctc is not None and adapter.ctc.num_rows:
                metric_bag.get("ctc", Mean).update(
                    adapter.ctc.total.detach(), weight=adapter.ctc.num_rows
                )
            if adapter is not None and adapter.quantity is not None:
                metric_bag.get("quantity", Mean).update(adapter.quantity.detach())
            tokens = loss.num_response_tokens
            metric_bag.get("num_response_tokens", Sum).update(tokens)
            metric_bag.get("num_mse_examples", Sum).update(loss.num_mse_rows)
        return loss.total
