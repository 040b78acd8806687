"""The fixed instructions behind ``transcribe``, ``translate`` and ``answer``.

Inference uses one wording per task, not a random draw from a pool, so that
the same call always builds the same prompt. The defaults are the first
entries of the held-out pools in
:mod:`speechmapper_plugin.data.instructions.prompts` (the ASR one is from the
evaluation pool, disjoint from the stage-2 training pool).
"""

from __future__ import annotations

from dataclasses import dataclass

from fairseq2.utils.validation import StandardObjectValidator, ValidationResult

from speechmapper_plugin.data.instructions.prompts import (
    ASR_EVAL_PROMPTS,
    SQA_PROMPTS,
    ST_PROMPTS,
    language_name,
    with_placeholder,
)
from speechmapper_plugin.llm import SPEECH_PLACEHOLDER
from speechmapper_plugin.llm.speech_prompt import (
    no_placeholder_problem,
    placeholder_problem,
)

LANGUAGE_FIELD = "{language}"
QUESTION_FIELD = "{question}"


@dataclass(frozen=True, kw_only=True)
class TaskPrompts:
    """The user-turn templates of the built-in tasks.

    Each holds :data:`SPEECH_PLACEHOLDER` exactly once; ``st`` also holds
    ``{language}`` (replaced by the target language's English name) and
    ``sqa`` holds ``{question}``. Other braces are kept literally.
    """

    asr: str = with_placeholder(ASR_EVAL_PROMPTS[0])
    """Transcription: "Please transcribe this recording word for word.\\n<speech>"."""

    st: str = with_placeholder(ST_PROMPTS[0])
    """Speech translation: "Translate the audio into {language}.\\n<speech>"."""

    sqa: str = SQA_PROMPTS[0].replace("{placeholder}", SPEECH_PLACEHOLDER)
    """Spoken QA: "Listen to the audio and answer the question.\\n<speech>\\nQuestion: {question}"."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        for name, field in (
            ("asr", None),
            ("st", LANGUAGE_FIELD),
            ("sqa", QUESTION_FIELD),
        ):
            template: str = getattr(self, name)

            problem = placeholder_problem(template, f"`{name}`")
            if problem is not None:
                result.add_error(problem)

            if field is not None and field not in template:
                result.add_error(f"`{name}` must contain {field}: {template!r}.")

        return result

    def check(self) -> None:
        """Raise :class:`~fairseq2.utils.validation.ValidationError` if a
        template is not valid (fairseq2's validator, as for a recipe config)."""
        StandardObjectValidator().validate(self)

    def transcription(self) -> str:
        return self.asr

    def translation(self, target_lang: str) -> str:
        """``target_lang``: a code of
        :data:`~speechmapper_plugin.data.instructions.prompts.LANGUAGE_NAMES`
        ("de", "deu", "zh-CN") or a language's name ("Swahili").

        :raises ValueError: for an unknown code, listing the known ones.
        """
        return self.st.replace(LANGUAGE_FIELD, language_name(target_lang))

    def question(self, question: str) -> str:
        question = question.strip()
        if not question:
            raise ValueError("The question must not be empty.")

        problem = no_placeholder_problem(question, "The question")
        if problem is not None:
            raise ValueError(problem)

        return self.sqa.replace(QUESTION_FIELD, question)
