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

from recipes.adapter_metrics import adapter_loss_metrics
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
    the loss, MSE_word, MSE_pad, the auxiliary terms the model has (``ctc``:
    the embedding CTC loss or a ``ctc_compression`` head's; ``quantity``: CIF's)
    and the frames, and, with
    ``score_embeddings`` (validation), how close the outputs are to the words:
    the mean cosine similarity on word positions and the embedding-space WER
    (hypotheses: the nearest tokens of the outputs, decoded with the targets'
    tokenizer)."""

    def __init__(
        self,
        model: Module,
        targets: TargetLLMEmbeddings,
        weights: Stage1Weights,
        *,
        score_embeddings: bool = False,
    ) -> None:
        super().__init__(model, has_pad_part=not weights.per_token)
        self._targets = targets
        self._weights = weights
        self._score_embeddings = score_embeddings

        # The terms :func:`stage1_loss` can compute for this model: an
        # adapter's own losses in the per-token mode only (it gets ``aux``
        # then), the embedding CTC loss of any projector when weighted.
        aux_terms = adapter_loss_metrics(model) if weights.per_token else frozenset()
        if weights.ctc_weight > 0.0:
            aux_terms |= {"ctc"}
        self._aux_terms = aux_terms

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        super().prepare_metric_bag(metric_bag)
        metric_bag.add("num_frames", Sum())
        for name in sorted(self._aux_terms):
            metric_bag.add(name, Mean())
        if self._score_embeddings:
            metric_bag.add("cosine_word", Mean())
            metric_bag.add("embedding_word_errors", Sum())
            metric_bag.add("embedding_ref_words", Sum())

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
        if self._score_embeddings:
            self._score_outputs(batch, loss, metric_bag)
        return loss.total

    @torch.inference_mode()
    def _score_outputs(
        self, batch: SpeechFeaturesBatch, loss: Stage1Loss, metric_bag: MetricBag
    ) -> None:
        """The cosine similarity and the word errors of the outputs; a
        variable-length adapter (``per_token``) is scored on what it emits on
        its own, not on the forced lengths of ``loss``."""
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

        if self._weights.per_token:
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

    @override
    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        errors = values.pop("embedding_word_errors", None)
        words = values.pop("embedding_ref_words", None)
        if errors is not None and words:
            values["embedding_wer"] = 100.0 * float(errors) / float(words)  # type: ignore[arg-type]
