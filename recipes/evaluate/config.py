"""Configuration of the evaluate recipe: generate's sections plus scoring and the judge."""

from __future__ import annotations

from dataclasses import dataclass, field

from fairseq2.utils.validation import ValidationResult

from recipes.generation import GenerateConfig
from speechmapper_plugin.evaluation import JudgeSection, ScoringSection


@dataclass(kw_only=True)
class EvaluateConfig(GenerateConfig):
    """``model``/``sfm``/``llm``, ``input``, ``prompt``, ``generation`` and
    ``batching`` are generate's (see ``recipes.generation``)."""

    scoring: ScoringSection = field(default_factory=ScoringSection)

    judge: JudgeSection = field(default_factory=JudgeSection)

    def validate(self) -> ValidationResult:
        result = super().validate()
        if self.scoring.task == "sqa" and self.input.manifest is not None:
            result.add_error(
                "`scoring.task: sqa` needs an instruction file (`input.instructions`): a manifest has no questions."
            )
        return result
