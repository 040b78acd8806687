"""The instruction of manifest rows and the system turn: the prompt section
of the generation recipes (``recipes.generate``, ``recipes.evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.data.instructions import check_placeholder
from speechmapper_plugin.llm.speech_prompt import no_placeholder_problem


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
