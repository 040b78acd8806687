"""Spoken-QA metrics: multiple-choice accuracy, and SQuAD's exact match and token F1.

Multiple choice (LibriSQA style). The options are the example's ``options``
(lettered A, B, ... in order), or else read from the instruction: lines ``(A) text``, ``A) text``, ``A. text`` or ``A: text`` (letters A-H), or
``(A) text (B) text`` on one line. The reference names the correct option by
letter (``B``, ``(B)``, ``B.``, ``B) text``) or by its text. A hypothesis
*selects* option L when

- it is the letter alone (``B``, ``(B)``, ``B.``), starts with ``B)``,
  ``B.``, ``B:`` or ``(B)``, contains ``(B)``, or contains ``option B`` /
  ``answer is B`` / ``answer: B`` (the letter must be upper case, so the
  article "A" is not a choice); or
- its SQuAD-normalised text contains the option's normalised text as whole
  words (an option whose text lies inside another selected option's text
  does not count on its own).

It is correct when it selects the reference option and no other; a
hypothesis naming two options is wrong, one naming none is wrong and counted
as ``no_choice``.

Extractive answers (SpokenSQuAD style): the official SQuAD v1.1 normalisation
(lower case, no punctuation, no articles a/an/the, single spaces), then exact
match and the F1 of the bag of tokens, each the best over the example's
acceptable ``answers`` (the reference alone if it has none).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speechmapper_plugin.data.instructions.prompts import SPEECH_PLACEHOLDER

_LETTERS = "ABCDEFGH"

_OPTION_LINE = re.compile(rf"^\s*\(?([{_LETTERS}])[).:]\s*(\S.*?)\s*$")
_INLINE_OPTION = re.compile(rf"\(([{_LETTERS}])\)\s*(.+?)\s*(?=\([{_LETTERS}]\)|$)")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's ``normalize_answer``: lower, no punctuation, no articles."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(hypothesis: str, reference: str) -> bool:
    return squad_normalize(hypothesis) == squad_normalize(reference)


def token_f1(hypothesis: str, reference: str) -> float:
    """SQuAD's token F1 in [0, 1]; two empty answers match (1.0)."""
    hyp = squad_normalize(hypothesis).split()
    ref = squad_normalize(reference).split()
    if not hyp or not ref:
        return float(hyp == ref)
    common = sum((Counter(hyp) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision = common / len(hyp)
    recall = common / len(ref)
    return 2 * precision * recall / (precision + recall)


def parse_options(instruction: str) -> dict[str, str]:
    """The lettered options of a multiple-choice instruction (empty if none).

    At least two options lettered A, B, ... in order make a choice; anything
    else (a lone "A." line) is not one.
    """
    text = instruction.replace(SPEECH_PLACEHOLDER, "\n")
    options: dict[str, str] = {}
    for line in text.splitlines():
        match = _OPTION_LINE.match(line)
        inline = list(_INLINE_OPTION.finditer(line.strip()))
        if len(inline) >= 2:
            for m in inline:
                options[m.group(1)] = m.group(2)
        elif match:
            options[match.group(1)] = match.group(2)
    letters = "".join(options)
    if len(options) < 2 or letters != _LETTERS[: len(options)]:
        return {}
    return options


def _letter_patterns(letter: str) -> list[re.Pattern[str]]:
    return [
        re.compile(rf"^\W*\(?{letter}\)?\W*$"),
        re.compile(rf"^\s*\(?{letter}[).:]"),
        re.compile(rf"\({letter}\)"),
        re.compile(rf"(?i:option|answer is|answer:)\s*\(?{letter}\b"),
    ]


def selected_options(hypothesis: str, options: dict[str, str]) -> set[str]:
    """The option letters ``hypothesis`` selects (see the module docstring)."""
    chosen = {
        letter
        for letter in options
        if any(p.search(hypothesis) for p in _letter_patterns(letter))
    }

    padded = f" {squad_normalize(hypothesis)} "
    by_text = {
        letter
        for letter, text in options.items()
        if (norm := squad_normalize(text)) and f" {norm} " in padded
    }
    # "a big dog" found also finds "dog"; only the longer option counts.
    for letter in list(by_text):
        norm = f" {squad_normalize(options[letter])} "
        if any(
            other != letter and norm in f" {squad_normalize(options[other])} "
            for other in by_text
        ):
            by_text.discard(letter)

    return chosen | by_text


def reference_option(reference: str, options: dict[str, str]) -> str | None:
    """The letter the reference names, by letter or by text; ``None`` if none."""
    match = re.match(rf"^\W*\(?([{_LETTERS}])(?:\)|\.|:|\s*$|\s+\W)", reference)
    if match and match.group(1) in options:
        return match.group(1)
    norm = squad_normalize(reference)
    for letter, text in options.items():
        if squad_normalize(text) == norm:
            return letter
    return None


@dataclass(frozen=True)
class ChoiceOutcome:
    options: int
    reference: str | None
    selected: tuple[str, ...]

    @property
    def correct(self) -> bool:
        return self.reference is not None and self.selected == (self.reference,)


def lettered(options: Sequence[str]) -> dict[str, str]:
    """``["red", "blue"]`` -> ``{"A": "red", "B": "blue"}``."""
    if len(options) > len(_LETTERS):
        raise ValueError(
            f"A multiple-choice question may have at most {len(_LETTERS)} options, but has {len(options)}."
        )
    return dict(zip(_LETTERS, options, strict=False))


def choice_outcome(
    hypothesis: str,
    reference: str,
    instruction: str,
    options: Sequence[str] | None = None,
) -> ChoiceOutcome | None:
    """How a multiple-choice answer scores; ``None`` without options (given
    or listed in the instruction)."""
    choices = lettered(options) if options else parse_options(instruction)
    if not choices:
        return None
    return ChoiceOutcome(
        len(choices),
        reference_option(reference, choices),
        tuple(sorted(selected_options(hypothesis, choices))),
    )


def question_text(instruction: str) -> str:
    """The instruction without the speech placeholder: the question a judge sees."""
    return " ".join(instruction.replace(SPEECH_PLACEHOLDER, " ").split())


def qa_scores(
    hypotheses: Sequence[str],
    references: Sequence[str],
    instructions: Sequence[str],
    *,
    options: Sequence[Sequence[str] | None] | None = None,
    answers: Sequence[Sequence[str] | None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Exact match and token F1 over every pair (in %), and multiple-choice
    accuracy over the pairs with options (given, or listed in the instruction).

    :param options: Per pair, the choices lettered A, B, ... (or ``None``).
    :param answers: Per pair, every acceptable answer (or ``None``: the reference).
    """
    count = len(hypotheses)
    if not count == len(references) == len(instructions):
        raise ValueError(
            "`hypotheses`, `references` and `instructions` must have the same length."
        )
    for name, values in (("options", options), ("answers", answers)):
        if values is not None and len(values) != count:
            raise ValueError(f"`{name}` must give one entry per hypothesis ({count}).")
    per_utt: list[dict[str, Any]] = []
    num_choice = num_correct = no_choice = no_reference_option = 0
    for i, (hyp, ref, instruction) in enumerate(
        zip(hypotheses, references, instructions, strict=True)
    ):
        accepted = list((answers[i] if answers else None) or [ref])
        row: dict[str, Any] = {
            "exact_match": any(exact_match(hyp, a) for a in accepted),
            "token_f1": max(token_f1(hyp, a) for a in accepted),
        }
        choices = options[i] if options else None
        outcome = choice_outcome(hyp, ref, instruction, choices)
        if outcome is not None:
            row["choice_selected"] = list(outcome.selected)
            row["choice_reference"] = outcome.reference
            row["choice_correct"] = outcome.correct
            if outcome.reference is None:
                no_reference_option += 1
            else:
                num_choice += 1
                num_correct += outcome.correct
                no_choice += not outcome.selected
        per_utt.append(row)

    count = len(per_utt)
    metrics: dict[str, Any] = {
        "num_examples": count,
        "exact_match": 100.0 * sum(r["exact_match"] for r in per_utt) / count
        if count
        else None,
        "token_f1": 100.0 * sum(r["token_f1"] for r in per_utt) / count
        if count
        else None,
        "normalization": "SQuAD v1.1 normalize_answer (lower, no punctuation, no a/an/the)",
    }
    if num_choice or no_reference_option:
        metrics["choice"] = {
            "num_examples": num_choice,
            "accuracy": 100.0 * num_correct / num_choice if num_choice else None,
            "correct": num_correct,
            "no_choice": no_choice,
            "reference_names_no_option": no_reference_option,
        }
    return metrics, per_utt
