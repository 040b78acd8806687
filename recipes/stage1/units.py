"""Training and validation units of stage 1."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.nn import BatchLayout
from fairseq2.recipe.evaluator import EvalUnit
from fairseq2.recipe.trainer import TrainUnit
from torch import Tensor
from torch.nn import Module
from typing_extensions import Self, final, override

from speechmapper_plugin.datasets.speech_features import SpeechFeaturesBatch
from speechmapper_plugin.input_checks import finite_rows
from speechmapper_plugin.llm import TargetLLMEmbeddings
from speechmapper_plugin.losses import (
    CTCLoss,
    EmbeddingMSELoss,
    build_targets,
    cif_quantity_loss,
    ctc_head_loss,
    embedding_ctc_loss,
    position_masks,
    transcript_mse_loss,
)
from speechmapper_plugin.metrics import (
    drop_pad_ids,
    nearest_token_ids,
    word_errors,
    word_position_cosine,
)
from speechmapper_plugin.models.adapters import AdapterAux, AlignmentTargets


class _RowBatch(Protocol):
    """A batch of feature rows that can be narrowed to some of its rows."""

    features: Tensor

    def select(self, rows: Tensor) -> Self: ...


BatchT = TypeVar("BatchT", bound=_RowBatch)


def drop_non_finite_rows(batch: BatchT) -> tuple[BatchT, int]:
    """Removes rows whose features hold NaN or inf; returns how many.

    Both stages' units call it and count the rows as ``num_skipped_non_finite``.
    """
    finite = finite_rows(batch.features)
    num_bad = int((~finite).sum())
    if num_bad == 0:
        return batch, 0
    return batch.select(finite), num_bad


def graph_zero(model: Module) -> Tensor:
    """A zero loss connected to every parameter: a rank whose batch is empty
    still runs backward, keeping DDP's all-reduce in step."""
    return torch.stack([p.sum() for p in model.parameters()]).sum() * 0.0


@final
@dataclass(frozen=True)
class Stage1Objective:
    """The terms of stage 1's loss and their weights."""

    alpha: float
    """Word-to-pad ratio of the MSE (fixed-rate projectors)."""

    per_token: bool = False
    """Variable-length adapters: one output per transcript token (the adapter
    is given the targets), so the MSE has no pad positions."""

    ctc_weight: float = 0.0
    """The auxiliary embedding CTC loss (0 = off)."""

    ctc_temperature: float = 0.1

    quantity_weight: float = 1.0
    """CIF's quantity loss."""

    adapter_ctc_weight: float = 1.0
    """The CTC loss of the ``ctc_compression`` adapter's head."""


@final
@dataclass(frozen=True)
class Stage1Terms:
    total: Tensor
    mse: EmbeddingMSELoss
    ctc: CTCLoss | None = None
    quantity: Tensor | None = None


def project_and_score(
    model: Module,
    batch: SpeechFeaturesBatch,
    targets: TargetLLMEmbeddings,
    objective: Stage1Objective,
) -> tuple[Tensor, BatchLayout, Stage1Terms]:
    features = batch.features.to(torch.float32)
    layout = BatchLayout.of(features, batch.feature_lens.tolist())

    aux = AdapterAux()
    if objective.per_token:
        outputs, out_layout = model(
            features,
            layout,
            pre_averaged=True,
            targets=AlignmentTargets(batch.target_ids, batch.target_lens),
            aux=aux,
        )
    else:
        outputs, out_layout = model(features, layout, pre_averaged=True)

    out_lens = out_layout.seq_lens_pt.to(outputs.device)

    mse = transcript_mse_loss(
        outputs,
        out_lens,
        batch.target_ids,
        batch.target_lens,
        targets,
        # One output per token: only word positions, at full weight.
        alpha=10.0 if objective.per_token else objective.alpha,
    )
    total = mse.total

    ctc: CTCLoss | None = None
    if aux.ctc_log_probs is not None and aux.ctc_lens is not None:
        ctc = ctc_head_loss(
            aux.ctc_log_probs,
            aux.ctc_lens.to(outputs.device),
            batch.target_ids,
            batch.target_lens,
            blank=aux.ctc_log_probs.size(-1) - 1,
        )
        total = total + objective.adapter_ctc_weight * ctc.total
    elif objective.ctc_weight > 0.0:
        ctc = embedding_ctc_loss(
            outputs,
            out_lens,
            targets.table,
            batch.target_ids,
            batch.target_lens,
            blank=targets.pad_idx,
            temperature=objective.ctc_temperature,
        )
        total = total + objective.ctc_weight * ctc.total

    quantity: Tensor | None = None
    if aux.weight_sums is not None:
        quantity = cif_quantity_loss(aux.weight_sums, batch.target_lens)
        total = total + objective.quantity_weight * quantity

    return outputs, out_layout, Stage1Terms(total, mse, ctc, quantity)


def add_shared_metrics(metric_bag: MetricBag) -> None:
    """What both stages log: the loss, the examples, the rows skipped as
    non-finite and the parts of the stage-1 loss."""
    metric_bag.add("loss", Mean())
    metric_bag.add("num_examples", Sum())
    metric_bag.add("mse_word", Mean())
    metric_bag.add("mse_pad", Mean())
    metric_bag.add("num_skipped_non_finite", Sum())


@torch.inference_mode()
def update_mse_metrics(metric_bag: MetricBag, mse: EmbeddingMSELoss) -> None:
    """Each part weighted by its positions (``mse_pad`` only where there are)."""
    metric_bag.get("mse_word", Mean).update(
        mse.mse_word.detach(), weight=max(mse.num_word_positions, 1)
    )
    if mse.num_pad_positions > 0:
        metric_bag.get("mse_pad", Mean).update(
            mse.mse_pad.detach(), weight=mse.num_pad_positions
        )


def add_loss_metrics(metric_bag: MetricBag) -> None:
    add_shared_metrics(metric_bag)
    metric_bag.add("num_frames", Sum())
    metric_bag.add("ctc", Mean())
    metric_bag.add("quantity", Mean())


@torch.inference_mode()
def update_loss_metrics(
    metric_bag: MetricBag,
    batch: SpeechFeaturesBatch,
    terms: Stage1Terms,
    num_bad: int,
) -> None:
    n = batch.batch_size
    metric_bag.get("loss", Mean).update(terms.total.detach(), weight=n)
    if terms.ctc is not None and terms.ctc.num_rows:
        metric_bag.get("ctc", Mean).update(
            terms.ctc.total.detach(), weight=terms.ctc.num_rows
        )
    if terms.quantity is not None:
        metric_bag.get("quantity", Mean).update(terms.quantity.detach(), weight=n)
    update_mse_metrics(metric_bag, terms.mse)
    metric_bag.get("num_examples", Sum).update(n)
    metric_bag.get("num_frames", Sum).update(int(batch.feature_lens.sum()))
    metric_bag.get("num_skipped_non_finite", Sum).update(num_bad)


@final
class Stage1TrainUnit(TrainUnit[SpeechFeaturesBatch]):
    """Projects cached SFM features and regresses them onto token embeddings."""

    def __init__(
        self,
        model: Module,
        targets: TargetLLMEmbeddings,
        alpha: float,
        *,
        objective: Stage1Objective | None = None,
    ) -> None:
        """:param objective: the full objective; default: the MSE with ``alpha``."""
        self._model = model
        self._targets = targets
        self._objective = objective or Stage1Objective(alpha=alpha)

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        add_loss_metrics(metric_bag)

    @override
    def process_batch(
        self, batch: SpeechFeaturesBatch, metric_bag: MetricBag
    ) -> tuple[Tensor, int | None]:
        batch, num_bad = drop_non_finite_rows(batch)

        if batch.batch_size == 0:
            metric_bag.get("num_skipped_non_finite", Sum).update(num_bad)
            return graph_zero(self._model), None

        _, _, terms = project_and_score(
            self._model, batch, self._targets, self._objective
        )

        update_loss_metrics(metric_bag, batch, terms, num_bad)

        # The loss is a mean; the trainer then averages over accumulated batches.
        return terms.total, None


@final
class Stage1ValidUnit(EvalUnit[SpeechFeaturesBatch]):
    """Reports, per validation split: the stage-1 loss (``loss``), MSE_word,
    MSE_pad, the mean cosine similarity on word positions and the
    embedding-space WER (hypotheses decoded with the targets' tokenizer)."""

    def __init__(
        self,
        model: Module,
        targets: TargetLLMEmbeddings,
        alpha: float,
        name: str,
        *,
        objective: Stage1Objective | None = None,
    ) -> None:
        self._model = model
        self._targets = targets
        self._objective = objective or Stage1Objective(alpha=alpha)
        self._name = name

    @property
    @override
    def name(self) -> str | None:
        return self._name

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        add_loss_metrics(metric_bag)
        metric_bag.add("cosine_word", Mean())
        metric_bag.add("embedding_word_errors", Sum())
        metric_bag.add("embedding_ref_words", Sum())

    @override
    @torch.inference_mode()
    def process_batch(self, batch: SpeechFeaturesBatch, metric_bag: MetricBag) -> None:
        batch, num_bad = drop_non_finite_rows(batch)
        if batch.batch_size == 0:
            metric_bag.get("num_skipped_non_finite", Sum).update(num_bad)
            return

        outputs, out_layout, terms = project_and_score(
            self._model, batch, self._targets, self._objective
        )
        update_loss_metrics(metric_bag, batch, terms, num_bad)

        out_lens = out_layout.seq_lens_pt
        width = outputs.size(1)
        targets = build_targets(
            self._targets.embed(batch.target_ids),
            batch.target_lens,
            self._targets.pad_embedding,
            width,
        )
        word_mask, _ = position_masks(out_lens, batch.target_lens, width)
        cos_sum, num_words = word_position_cosine(outputs, targets, word_mask)
        if num_words:
            metric_bag.get("cosine_word", Mean).update(
                cos_sum / num_words, weight=num_words
            )

        if self._objective.per_token:
            # The hypotheses come from what the adapter emits on its own
            # (its length decisions included), not from the forced lengths.
            features = batch.features.to(torch.float32)
            outputs, out_layout = self._model(
                features,
                BatchLayout.of(features, batch.feature_lens.tolist()),
                pre_averaged=True,
            )
            out_lens = out_layout.seq_lens_pt

        ids = nearest_token_ids(
            outputs,
            self._targets.table,
            pad_embedding=self._targets.pad_embedding,
            pad_idx=self._targets.pad_idx,
        )
        hypotheses = [
            self._targets.decode(
                drop_pad_ids(ids[i], int(out_lens[i]), self._targets.pad_idx)
            )
            for i in range(batch.batch_size)
        ]
        errors, words = word_errors(batch.transcripts, hypotheses)
        metric_bag.get("embedding_word_errors", Sum).update(errors)
        metric_bag.get("embedding_ref_words", Sum).update(words)

    @override
    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        errors = values.pop("embedding_word_errors", None)
        words = values.pop("embedding_ref_words", None)
        if errors is not None and words:
            values["embedding_wer"] = 100.0 * float(errors) / float(words)  # type: ignore[arg-type]
