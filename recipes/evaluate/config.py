"""Configuration of the evaluate recipe: generate's sections plus scoring and the judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fairseq2.utils.validation import ValidationResult

from recipes.generation import GenerateConfig
from speechmapper_plugin.data.convert.europarl_st import segments_path
from speechmapper_plugin.evaluation import JudgeSection, ScoringSection


@dataclass(kw_only=True)
class SessionsSection:
    """Whole recordings scored against their reference segments."""

    segments: Path | None = None
    """A whole-session segments file (``speechmapper convert europarl_st
    --whole-session`` writes ``<instructions>.segments.jsonl``): each
    recording's translation is re-segmented onto its reference segments
    before BLEU/chrF/COMET, its transcription scored by WER over the whole
    recording. Default: that file beside ``input.instructions``, if any."""


@dataclass(kw_only=True)
class EvaluateConfig(GenerateConfig):
    """``model``/``sfm``/``llm``, ``input``, ``prompt``, ``generation`` and
    ``batching`` are generate's (see ``recipes.generation``)."""

    scoring: ScoringSection = field(default_factory=ScoringSection)

    judge: JudgeSection = field(default_factory=JudgeSection)

    sessions: SessionsSection = field(default_factory=SessionsSection)

    def session_segments(self) -> Path | None:
        """The segments file to score against: ``sessions.segments``, else
        the one beside ``input.instructions``."""
        if self.sessions.segments is not None:
            return self.sessions.segments.expanduser()
        if self.input.instructions is None:
            return None
        beside = segments_path(self.input.instructions.expanduser())
        return beside if beside.is_file() else None

    def validate(self) -> ValidationResult:
        result = super().validate()
        if self.scoring.task == "sqa" and self.input.manifest is not None:
            result.add_error(
                "`scoring.task: sqa` needs an instruction file (`input.instructions`): a manifest has no questions."
            )
        return result
