"""Configuration of the stage-2 recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from fairseq2.recipe.config import (
    CommonSection,
    GangSection,
    LRSchedulerSection,
    ModelSection,
    OptimizerSection,
    ReferenceModelSection,
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
from speechmapper_plugin.datasets.instructions import INSTRUCTION_DATASET
from speechmapper_plugin.losses import check_alpha, check_sigma
from speechmapper_plugin.validation import check_non_negative_fields


@dataclass(kw_only=True)
class SystemPromptSection:
    """The system turn of stage 2's chat prompts (the instructions come with
    the examples); not the generate recipe's ``InstructionPromptSection``."""

    system_prompt: str | None = None
    """An optional system turn in every prompt."""


@dataclass(kw_only=True)
class Stage2DatasetSection(SpeechDatasetSection):
    max_num_frames: int = 4_000
    """Frames (25 Hz) per batch and rank: the LLM runs on every example, so
    batches are much smaller than in stage 1."""


@dataclass(kw_only=True)
class Stage2LossSection:
    sigma: float = 0.9
    """``L_stage2 = (1−σ)·CE + σ·MSE``: 0.9 keeps the projector task-agnostic (the
    paper's regime for unseen tasks); 0.5 is the task-specific default."""

    alpha: float = 9.0
    """The word-to-pad ratio of the MSE term (the stage-1 loss's α)."""

    adapter_ctc_weight: float = 1.0
    """``ctc_compression`` adapters: weight of the CTC loss of their head,
    added at every σ (stage 1's ``loss.adapter_ctc_weight``)."""

    quantity_weight: float = 1.0
    """``cif`` adapters: weight of the quantity loss, added at every σ
    (stage 1's ``loss.quantity_weight``)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        for check, value in ((check_sigma, self.sigma), (check_alpha, self.alpha)):
            try:
                check(value)
            except ValueError as ex:
                result.add_error(str(ex))
        check_non_negative_fields(
            result, self, ("adapter_ctc_weight", "quantity_weight"), section="loss."
        )
        return result


@dataclass(kw_only=True)
class Stage2Config:
    model: ModelSection = field(
        default_factory=lambda: ModelSection(name="last_checkpoint")
    )
    """The projector to tune: by default the last checkpoint of the stage-1
    run given in ``common.assets.prev_checkpoint_dir``."""

    llm: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(
            name="speechmapper_llama3_1_8b_instruct", dtype=torch.bfloat16
        )
    )
    """The frozen LLM (never trained, never checkpointed)."""

    prompt: SystemPromptSection = field(default_factory=SystemPromptSection)

    target_llm: TranscriptTargetsSection = field(
        default_factory=TranscriptTargetsSection
    )
    """The MSE targets: pad token and transcript policy (normalisation,
    BOS/EOS). Give the values of the stage-1 run's ``target_llm`` section (its
    ``name`` is ``llm.name`` here), so that the MSE term regresses onto the
    targets the projector learned. Its ``transcript_normalization`` also
    writes the CE response of every example whose response is the transcript
    (ASR), so the two terms train on one text."""

    dataset: Stage2DatasetSection = field(
        default_factory=lambda: Stage2DatasetSection(family=INSTRUCTION_DATASET)
    )

    loss: Stage2LossSection = field(default_factory=Stage2LossSection)

    gang: GangSection = field(default_factory=GangSection)

    trainer: TrainerSection = field(default_factory=ddp_trainer)

    optimizer: OptimizerSection = field(
        default_factory=lambda: adamw_optimizer(lr=5e-5)
    )

    lr_scheduler: LRSchedulerSection | None = field(
        default_factory=lambda: cosine_lr_scheduler(
            num_warmup_steps=100, final_lr_scale=0.1
        )
    )

    regime: RegimeSection = field(
        default_factory=lambda: RegimeSection(
            num_steps=1_000,
            validate_every_n_steps=100,
            checkpoint_every_n_steps=250,
            keep_last_n_checkpoints=1,
            publish_metrics_every_n_steps=10,
        )
    )

    common: CommonSection = field(default_factory=CommonSection)
