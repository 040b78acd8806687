"""Configuration of the generate recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from fairseq2.recipe.config import CommonSection, GangSection, ReferenceModelSection
from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.data.instructions import check_placeholder
from speechmapper_plugin.datasets.waveform_reader import WaveformReadOptions
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.llm.speech_prompt import no_placeholder_problem
from speechmapper_plugin.validation import check_positive_fields

DEFAULT_SFM_CARD = "seamless_m4t_v2_large_speech_encoder"
DEFAULT_LLM_CARD = "speechmapper_llama3_1_8b_instruct"


@dataclass(kw_only=True)
class InputSection:
    """What to generate for: an audio manifest or an instruction file."""

    manifest: Path | None = None
    """An audio manifest (``.tsv``/``.jsonl``, see
    ``speechmapper_plugin.data.manifest``); every row gets the instruction of
    ``prompt.task``. Malformed rows and unusable audio are skipped and listed."""

    root: Path | None = None
    """The directory relative audio paths of ``manifest`` are resolved against."""

    instructions: Path | None = None
    """An instruction file (JSONL of ``InstructionExample``: ``id``,
    ``instruction`` with ``<speech>``, ``audio`` path or ``speech`` id,
    optional ``response``, ``task``, ``target_lang``)."""

    feature_store: Path | None = None
    """The feature store that ``speech`` ids of ``instructions`` refer to."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if (self.manifest is None) == (self.instructions is None):
            result.add_error(
                "Give exactly one of `input.manifest` (an audio manifest) and `input.instructions` (an instruction JSONL file)."
            )
        if self.manifest is None and self.root is not None:
            result.add_error("`input.root` applies to `input.manifest` only.")
        return result


@dataclass(kw_only=True)
class InstructionPromptSection:
    """The instruction of manifest rows (from ``task`` or given), and the
    system turn of every prompt."""

    task: Literal["asr", "st", "custom"] = "asr"
    """For a manifest: ``asr`` (transcribe; the transcript is the reference),
    ``st`` (translate into ``target_lang``) or ``custom`` (``instruction``)."""

    target_lang: str | None = None
    """The target language of ``st`` (a code such as ``de``, or a name)."""

    instruction: str | None = None
    """The user turn for every manifest row, with ``<speech>`` exactly once;
    replaces the task's default wording (``TaskPrompts``)."""

    system_prompt: str | None = None
    """An optional system turn in every prompt."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.task == "st" and not self.target_lang and self.instruction is None:
            result.add_error("`prompt.task: st` needs `prompt.target_lang`.")
        if self.task == "custom" and self.instruction is None:
            result.add_error("`prompt.task: custom` needs `prompt.instruction`.")
        if self.instruction is not None:
            try:
                check_placeholder(self.instruction, "`prompt.instruction`")
            except ValueError as ex:
                result.add_error(str(ex))
        if self.system_prompt is not None:
            problem = no_placeholder_problem(
                self.system_prompt, "`prompt.system_prompt`"
            )
            if problem is not None:
                result.add_error(problem)
        return result


@dataclass(kw_only=True)
class FeaturesSection:
    """Which speech-encoder features feed the projector."""

    layer: int | None = None
    """1-based encoder layer; default: the encoder card's ``output_layer``
    (24 for SeamlessM4T-v2 large, SpeechMapper's)."""

    layer_norm: bool | None = None
    """Apply the encoder's final LayerNorm; default: the card's (``true``)."""


@dataclass(kw_only=True)
class BatchingSection(WaveformReadOptions):
    """How the audio reader batches (its options, with generation's defaults:
    the LLM runs on every example, so batches are smaller than in feature
    extraction); ``max_batch_size`` also bounds feature-store batches."""

    max_num_samples: int = 16_000 * 120
    """Audio per batch, in 16 kHz samples (120 s); examples are sorted by
    length so batches hold similar lengths."""

    max_batch_size: int = 16
    """Examples per batch (also for feature-store examples)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_positive_fields(
            result,
            self,
            ("max_num_samples", "max_batch_size", "num_parallel_decodes", "prefetch"),
            section="batching.",
        )
        return result


@dataclass(kw_only=True)
class GenerateConfig:
    model: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(name="last_checkpoint")
    )
    """The projector: by default the last checkpoint of the stage-1/2 run in
    ``common.assets.prev_checkpoint_dir``."""

    sfm: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(name=DEFAULT_SFM_CARD)
    )
    """The speech encoder the projector was trained on (fp32 by default)."""

    llm: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(
            name=DEFAULT_LLM_CARD, dtype=torch.bfloat16
        )
    )
    """The frozen LLM; must be the projector's ``target_llm``."""

    input: InputSection = field(default_factory=InputSection)

    prompt: InstructionPromptSection = field(default_factory=InstructionPromptSection)

    features: FeaturesSection = field(default_factory=FeaturesSection)

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Greedy by default (``beam_size: 1``); budgets and the repetition guard."""

    batching: BatchingSection = field(default_factory=BatchingSection)

    gang: GangSection = field(default_factory=GangSection)

    common: CommonSection = field(
        default_factory=lambda: CommonSection(no_sweep_dir=True)
    )

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.llm.name is None:
            result.add_error(
                "`llm.name` must name the LLM's asset card (its tokenizer and chat template come from the card)."
            )
        if self.input.instructions is not None and (
            self.prompt.instruction is not None or self.prompt.target_lang is not None
        ):
            result.add_error(
                "`prompt.instruction` and `prompt.target_lang` apply to `input.manifest` only; an instruction file carries its own instructions."
            )
        if self.gang.tensor_parallel_size != 1:
            result.add_error(
                "`gang.tensor_parallel_size` must be 1: every rank generates for its own share of the examples."
            )
        return result
