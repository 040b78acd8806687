"""The LLM judge's prompts (shipped, pinned files) and the strict verdict parsers.

Scores from LLM judges are only comparable when the prompt and the parsing are
fixed: the prompt lives in a file whose full text enters the cache key and the
summary, and a verdict is read only if the judge wrote exactly the requested
line. Anything else is unparseable (``None``), never guessed.

Two modes: ``accuracy`` (the paper's spoken-QA metric: is the answer correct,
``Correct: yes|no``) and ``score`` (AudioBench's 0-5 rating, ``Rating: N``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

JudgeMode = Literal["accuracy", "score"]

JUDGE_MODES: Final = ("accuracy", "score")

DEFAULT_JUDGE_MODE: Final[JudgeMode] = "accuracy"
"""The paper reports spoken QA as judge accuracy."""

SCORE_JUDGE_PROMPT_FILE: Final = Path(__file__).with_name("judge_prompt.txt")
"""The shipped AudioBench-style prompt: question, reference and model answer
-> ``Rating: N`` on the 0-5 scale (mode ``score``)."""

ACCURACY_JUDGE_PROMPT_FILE: Final = Path(__file__).with_name(
    "judge_accuracy_prompt.txt"
)
"""The shipped binary prompt: question, reference and model answer ->
``Correct: yes`` or ``Correct: no`` (mode ``accuracy``)."""

JUDGE_PROMPT_FILES: Final[dict[str, Path]] = {
    "accuracy": ACCURACY_JUDGE_PROMPT_FILE,
    "score": SCORE_JUDGE_PROMPT_FILE,
}
"""Each mode's shipped prompt."""

VERDICT_LINES: Final[dict[str, str]] = {"accuracy": "Correct:", "score": "Rating:"}
"""What each mode's verdict line starts with; its prompt must ask for it."""

JUDGE_FIELDS: Final = ("question", "reference", "hypothesis")
"""The placeholders (``{question}`` ...) a judge prompt must hold, each once."""

JUDGE_MIN_SCORE: Final = 0
JUDGE_MAX_SCORE: Final = 5
"""The rating scale of the shipped prompt (AudioBench reports the mean ×20)."""

_FIELD_PATTERN: Final = re.compile(r"\{(" + "|".join(JUDGE_FIELDS) + r")\}")

_VERDICT_PATTERN: Final = re.compile(r"Rating: ([0-9]+)")

_CORRECT_PATTERN: Final = re.compile(r"Correct: (yes|no)")


class JudgePromptError(ValueError):
    """Raised when a judge prompt file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt template: the user turn, with ``{question}``,
    ``{reference}`` and ``{hypothesis}`` exactly once each."""

    text: str

    source: str
    """Where the text came from (a path), for messages and summaries."""

    @staticmethod
    def from_file(
        path: Path | None = None, mode: JudgeMode = DEFAULT_JUDGE_MODE
    ) -> JudgePrompt:
        """Read and check a prompt file (default: the shipped one of ``mode``),
        which must ask for ``mode``'s verdict line."""
        _check_mode(mode)
        path = JUDGE_PROMPT_FILES[mode] if path is None else path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as ex:
            raise JudgePromptError(
                f"Cannot read the judge prompt file {path}: {ex}"
            ) from None

        return JudgePrompt.from_text(text, source=str(path), mode=mode)

    @staticmethod
    def from_text(
        text: str, *, source: str = "<text>", mode: JudgeMode = DEFAULT_JUDGE_MODE
    ) -> JudgePrompt:
        _check_mode(mode)
        problems = []
        for name in JUDGE_FIELDS:
            count = text.count("{" + name + "}")
            if count != 1:
                problems.append(f"{{{name}}} {count} times")
        if problems:
            raise JudgePromptError(
                f"The judge prompt {source} must contain each of {{question}}, {{reference}} and {{hypothesis}} exactly once, but contains {', '.join(problems)}."
            )
        line = VERDICT_LINES[mode]
        if line not in text:
            raise JudgePromptError(
                f"The judge prompt {source} never asks for the `{line}` line that the `{mode}` mode reads; use a prompt written for that mode (the shipped one: leave `judge.prompt_file` unset) or set `judge.mode` to the prompt's."
            )

        return JudgePrompt(text=text, source=source)

    def fill(self, question: str, reference: str, hypothesis: str) -> str:
        """The prompt for one item. Filled in one pass, so braces inside the
        item's own text are never taken for placeholders."""
        values = {"question": question, "reference": reference}
        values["hypothesis"] = hypothesis

        return _FIELD_PATTERN.sub(lambda m: values[m.group(1)], self.text)


def _check_mode(mode: str) -> None:
    if mode not in JUDGE_MODES:
        raise JudgePromptError(
            f"The judge mode must be one of {', '.join(JUDGE_MODES)}, but is '{mode}'."
        )


def parse_verdict(text: str) -> int | None:
    """The rating in a judge's output, or ``None`` if it is not exactly one line
    ``Rating: N`` (surrounding whitespace aside) with N an integer on the scale.

    Strict on purpose: "Rating: 4." or "I'd say 4" are unparseable and are
    counted as such, not guessed.
    """
    match = _VERDICT_PATTERN.fullmatch(text.strip())
    if match is None:
        return None

    digits = match.group(1)
    if len(digits) > 1 and digits.startswith("0"):
        return None

    score = int(digits)
    if not JUDGE_MIN_SCORE <= score <= JUDGE_MAX_SCORE:
        return None

    return score


def parse_correct(text: str) -> bool | None:
    """The accuracy verdict in a judge's output: ``True`` for exactly one line
    ``Correct: yes``, ``False`` for ``Correct: no`` (surrounding whitespace
    aside), ``None`` for anything else ("Correct: Yes.", "yes", two lines),
    counted as unparseable, never guessed."""
    match = _CORRECT_PATTERN.fullmatch(text.strip())
    if match is None:
        return None

    return match.group(1) == "yes"
