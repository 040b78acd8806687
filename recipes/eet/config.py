"""Configuration of the EET recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from fairseq2.recipe.config import ReferenceModelSection
from fairseq2.utils.validation import ValidationResult
from typing_extensions import override

from recipes.common import (
    DEFAULT_LLM_CARD,
    AlternativeInputs,
    InferenceRunSections,
    check_llm_card,
)
from speechmapper_plugin.evaluation.eet import EETConfig


@dataclass(kw_only=True)
class EETInputSection(AlternativeInputs):
    """The text set: exactly one of ``text_file`` and ``manifest``."""

    text_file: Path | None = None
    """UTF-8 text, one sentence per line."""

    manifest: Path | None = None
    """An audio manifest; its transcripts are the sentences (no audio is read)."""

    max_sentences: int | None = 200
    """Use the first this many sentences (``null``: all of them)."""

    CHOICES = {"text_file": "one sentence per line", "manifest": "its transcripts"}

    @override
    def validate(self) -> ValidationResult:
        result = super().validate()
        if self.max_sentences is not None and self.max_sentences < 1:
            result.add_error(
                f"`input.max_sentences` must be positive or null, but is {self.max_sentences}."
            )
        return result


@dataclass(kw_only=True)
class EETRecipeConfig(InferenceRunSections):
    llm: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(
            name=DEFAULT_LLM_CARD, dtype=torch.bfloat16
        )
    )
    """The target LLM (its card names the chat template)."""

    input: EETInputSection = field(default_factory=EETInputSection)

    eet: EETConfig = field(default_factory=EETConfig)
    """Noise variances, the instruction, the change threshold, draws, seed,
    batch size and greedy generation settings."""

    marker_mse: float | None = None
    """An MSE to mark on the plot, e.g. a stage-1 run's held-out ``mse_word``."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_llm_card(result, self.llm)
        if self.marker_mse is not None and not self.marker_mse > 0.0:
            result.add_error(
                f"`marker_mse` must be positive (the plot's MSE axis is logarithmic), but is {self.marker_mse}."
            )
        return result
