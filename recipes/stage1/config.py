"""Configuration of the stage-1 recipe."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fairseq2.recipe.config import (
    CommonSection,
    GangSection,
    LRSchedulerSection,
    ModelSection,
    OptimizerSection,
    RegimeSection,
    TrainerSection,
)
from fairseq2.utils.validation import ValidationResult

from recipes.common import (
    SpeechDatasetSection,
    TranscriptTargetsSection,
    adamw_optimizer,
    cosine_lr_scheduler,
    ddp_trainer,
)
from speechmapper_plugin.datasets.speech_features import SPEECH_FEATURES_DATASET
from speechmapper_plugin.losses import check_alpha
from speechmapper_plugin.models.speechmapper import SPEECHMAPPER_FAMILY
from speechmapper_plugin.validation import check_non_negative_fields


@dataclass(kw_only=True)
class TargetLLMSection(TranscriptTargetsSection):
    """The LLM whose token-embedding space the projector learns to speak.

    Only its tokenizer and its embedding table are loaded; the decoder is never
    built.
    """

    name: str = "speechmapper_llama3_1_8b_instruct"
    """The asset card of the target LLM."""


@dataclass(kw_only=True)
class Stage1DatasetSection(SpeechDatasetSection):
    max_num_valid_frames: int | None = None
    """Frame budget of validation batches (default: ``max_num_frames``)."""

    untrainable_policy: Literal["skip", "error"] = "skip"
    """What to do with transcripts longer than the projector output."""


@dataclass(kw_only=True)
class Stage1LossSection:
    alpha: float = 9.0
    """Word-to-pad ratio of the stage-1 loss
    ``L_stage1 = (α·MSE_word + (10−α)·MSE_pad)/10``. The
    paper's Eq. 1 allows α ∈ [1, 9]; we also accept 10 (pads ignored) as an
    ablation endpoint. 9 is our default (the most word weight in the paper's
    range); we found no value the paper states it used."""

    ctc_weight: float = 0.0
    """Weight of an auxiliary CTC loss on the projector outputs (0 = off, the
    paper's stage 1). The output layer is the target LLM's embedding table
    (cosine / ``ctc_temperature``) and the pad token is the blank: it asks for
    each token once, against repetitions. Any fixed-rate projector or adapter;
    rows with more tokens than outputs are left out of it."""

    ctc_temperature: float = 0.1
    """The temperature of the auxiliary CTC's cosine logits."""

    quantity_weight: float = 1.0
    """``cif`` adapters: weight of the quantity loss ``|sum(weights) - tokens|``."""

    adapter_ctc_weight: float = 1.0
    """``ctc_compression`` adapters: weight of the CTC loss of their head."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        try:
            check_alpha(self.alpha)
        except ValueError as ex:
            result.add_error(str(ex))
        weights = ("ctc_weight", "quantity_weight", "adapter_ctc_weight")
        check_non_negative_fields(result, self, weights, section="loss.")
        if self.ctc_temperature <= 0.0:
            result.add_error(
                f"`loss.ctc_temperature` must be positive, but is {self.ctc_temperature}."
            )
        return result


@dataclass(kw_only=True)
class WarmStartSection:
    """Start from another projector's weights, possibly trained for another
    LLM (retargeting): every tensor whose name and shape fit is loaded, the
    rest (the final projection to another width, ...) is initialised as
    usual. The feature store is reused as it is: it must hold the features
    the source was trained on. The projector config records the source
    (``warm_started_from``), so the checkpoint card, later stages and an
    export say what it was retargeted from."""

    checkpoint: Path | None = None
    """A stage-1 or stage-2 output directory (its last checkpoint), its
    ``checkpoints`` or ``checkpoints/step_N`` directory, or an export
    directory. ``None``: no warm start."""

    freeze_loaded_steps: int = 0
    """Keep the loaded tensors as loaded for this many steps (their gradients
    are zeroed), so the fresh output layer settles before the trunk moves."""

    keep_fresh: list[str] = field(default_factory=list)
    """Regular expressions (``re.match`` on parameter names, as in fairseq2's
    ``optimizer.config.groups``) of tensors left at their fresh
    initialisation although they fit, e.g. ``['blocks\\.1\\.']`` for the
    last block of a two-block projector: a trunk's top layers specialise to
    the source's LLM and training speakers. Each must match some tensor."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_non_negative_fields(
            result, self, ("freeze_loaded_steps",), section="warm_start."
        )
        for name in ("freeze_loaded_steps", "keep_fresh"):
            if getattr(self, name) and self.checkpoint is None:
                result.add_error(
                    f"`warm_start.{name}` applies to loaded tensors, but `warm_start.checkpoint` is not set."
                )
        for pattern in self.keep_fresh:
            try:
                re.compile(pattern)
            except re.error as ex:
                result.add_error(
                    f"`warm_start.keep_fresh` holds '{pattern}', which is not a regular expression: {ex}."
                )
        return result


@dataclass(kw_only=True)
class Stage1Config:
    model: ModelSection = field(
        default_factory=lambda: ModelSection(family=SPEECHMAPPER_FAMILY, arch="paper")
    )

    target_llm: TargetLLMSection = field(default_factory=TargetLLMSection)

    dataset: Stage1DatasetSection = field(
        default_factory=lambda: Stage1DatasetSection(family=SPEECH_FEATURES_DATASET)
    )

    loss: Stage1LossSection = field(default_factory=Stage1LossSection)

    warm_start: WarmStartSection = field(default_factory=WarmStartSection)

    gang: GangSection = field(default_factory=GangSection)

    trainer: TrainerSection = field(default_factory=ddp_trainer)

    optimizer: OptimizerSection = field(
        default_factory=lambda: adamw_optimizer(lr=1e-4)
    )

    lr_scheduler: LRSchedulerSection | None = field(
        default_factory=lambda: cosine_lr_scheduler(
            num_warmup_steps=10_000, final_lr_scale=0.01
        )
    )

    regime: RegimeSection = field(
        default_factory=lambda: RegimeSection(
            num_steps=2_000_000,
            validate_every_n_steps=10_000,
            checkpoint_every_n_steps=10_000,
            keep_last_n_checkpoints=2,
            publish_metrics_every_n_steps=100,
        )
    )

    common: CommonSection = field(default_factory=CommonSection)
