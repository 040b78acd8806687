"""Stage 1's criterion: the loss and metrics of the training and the
validation units (:class:`~recipes.common.CriterionTrainUnit`,
:class:`~recipes.common.CriterionEvalUnit`)."""

from __future__ import annotations

from collections.abc import MutableMapping

import torch
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn import Module
from typing_extensions import final, override

from recipes.common import StageCriterion, update_mse_metrics
from speechmapper_plugin.datasets.speech_features import SpeechFeaturesBatch
from speechmapper_plugin.llm import TargetLLMEmbeddings
from speechmapper_plugin.losses import (
    Stage1Loss,
    Stage1Weights,
    build_targets,
    position_masks,
    stage1_loss,
)
from speechmapper_plugin.metrics import (
    drop_pad_ids,
    nearest_token_ids,
    word_errors,
    word_position_cosine,
)


@final
class Stage1Criterion(StageCriterion[SpeechFeaturesBatch]):
    """Projects cached SFM features and regresses them onto the transcripts'
    token embeddings (:func:`~speechmapper_plugin.losses.stage1_loss`); logs
    the loss, MSE_word, MSE_pad, the auxiliary terms and the frames, and, with
    a ``scorer`` (validation), how close the outputs are to the words."""

    def __init__(
        self,
        model: Module,
        targets: TargetLLMEmbeddings,
        weights: Stage1Weights,
        *,
        scorer: EmbeddingScorer | None = None,
    ) -> None:
        super().__init__(model)
        self._targets = targets
        self._weights = weights
        self._scorer = scorer

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        super().prepare_metric_bag(metric_bag)
        metric_bag.add("num_frames", Sum())
        metric_bag.add("ctc", Mean())
        metric_bag.add("quantity", Mean())
        if self._scorer is not None:
            self._scorer.prepare_metric_bag(metric_bag)

    @override
    def _score(self, batch: SpeechFeaturesBatch, metric_bag: MetricBag) -> Tensor:
        loss = stage1_loss(
            self._model, batch, targets=self._targets, weights=self._weights
        )
        with torch.inference_mode():
            if loss.ctc is not None and loss.ctc.num_rows:
                metric_bag.get("ctc", Mean).update(
                    loss.ctc.total.detach(), weight=loss.ctc.num_rows
                )
            if loss.quantity is not None:
                metric_bag.get("quantity", Mean).update(
                    loss.quantity.detach(), weight=batch.batch_size
                )
            update_mse_metrics(metric_bag, loss.mse)
            metric_bag.get("num_frames", Sum).update(int(batch.feature_lens.sum()))
        if self._scorer is not None:
            self._scorer(
                self._model, batch, loss, metric_bag, per_token=self._weights.per_token
            )
        return loss.total

    @override
    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        if self._scorer is not None:
            self._scorer.process_metric_values(values)


@final
class EmbeddingScorer:
    """Stage-1 validation: the mean cosine similarity on word positions and
    the embedding-space WER (hypotheses: the nearest tokens of the outputs,
    decoded with the targets' tokenizer)."""

    def __init__(self, targets: TargetLLMEmbeddings) -> None:
        self._targets = targets

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        metric_bag.add("cosine_word", Mean())
        metric_bag.add("embedding_word_errors", Sum())
        metric_bag.add("embedding_ref_words", Sum())

    @torch.inference_mode()
    def __call__(
        self,
        model: Module,
        batch: SpeechFeaturesBatch,
        loss: Stage1Loss,
        metric_bag: MetricBag,
        *,
        per_token: bool,
    ) -> None:
        """:param per_token: the model is a variable-length adapter, scored on
        what it emits on its own, not on the forced lengths of ``loss``."""
        targets = self._targets
        outputs = loss.outputs
        out_lens = loss.output_layout.seq_lens_pt
        width = outputs.size(1)
        expected = build_targets(
            targets.embed(batch.target_ids),
            batch.target_lens,
            targets.pad_embedding,
            width,
        )
        word_mask, _ = position_masks(out_lens, batch.target_lens, width)
        cos_sum, num_words = word_position_cosine(outputs, expected, word_mask)
        if num_words:
            metric_bag.get("cosine_word", Mean).update(
                cos_sum / num_words, weight=num_words
            )

        if per_token:
            # The hypotheses come from what the adapter emits on its own
            # (its length decisions included), not from the forced lengths.
            features = batch.features.to(torch.float32)
            outputs, out_layout = model(
                features,
                BatchLayout.of(features, batch.feature_lens.tolist()),
                pre_averaged=True,
            )
            out_lens = out_layout.seq_lens_pt

        ids = nearest_token_ids(
            outputs,
            targets.table,
            pad_embedding=targets.pad_embedding,
            pad_idx=targets.pad_idx,
        )
        hypotheses = [
            targets.decode(drop_pad_ids(ids[i], int(out_lens[i]), targets.pad_idx))
            for i in range(batch.batch_size)
        ]
        errors, words = word_errors(batch.transcripts, hypotheses)
        metric_bag.get("embedding_word_errors", Sum).update(errors)
        metric_bag.get("embedding_ref_words", Sum).update(words)

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        errors = values.pop("embedding_word_errors", None)
        words = values.pop("embedding_ref_words", None)
        if errors is not None and words:
            values["embedding_wer"] = 100.0 * float(errors) / float(words)  # type: ignore[arg-type]
