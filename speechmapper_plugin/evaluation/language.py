"""Target-language adherence: is each hypothesis in the language asked for?

A speech LLM that ignores the instruction answers in the speech's language
(or the LLM's favourite one); the paper reports this as a failure signature.
Identification is offline, with py3langid's n-gram model restricted to a
candidate set: unrestricted, short outputs get confused with rare languages,
which would count as failures that are not.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from speechmapper_plugin.data.instructions.prompts import language_code

DEFAULT_CANDIDATES: tuple[str, ...] = (
    "en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja",
)  # fmt: skip
"""The paper's source and target languages plus the ones a Llama-3 answer
most often drifts into."""

EMPTY = "empty"
"""The "detected language" of an empty hypothesis."""


class LanguageIdentifierError(ValueError):
    """The candidate set names a language py3langid does not know."""


@lru_cache(maxsize=8)
def _identifier(candidates: tuple[str, ...]) -> LanguageIdentifier:
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    known = set(identifier.nb_classes)
    unknown = sorted(set(candidates) - known)
    if unknown:
        raise LanguageIdentifierError(
            f"py3langid does not know the candidate language(s) {unknown}; known codes: {sorted(known)}."
        )
    identifier.set_languages(list(candidates))
    return identifier


def candidate_codes(candidates: Sequence[str]) -> tuple[str, ...]:
    codes = tuple(sorted({language_code(c) for c in candidates}))
    if len(codes) < 2:
        raise LanguageIdentifierError(
            f"Language identification needs at least two candidate languages, but got {list(candidates)}."
        )
    _identifier(codes)  # fail early on unknown codes
    return codes


def detect_language(text: str, candidates: Sequence[str] = DEFAULT_CANDIDATES) -> str:
    """The most likely candidate language of ``text``; ``"empty"`` for blank text."""
    if not text.strip():
        return EMPTY
    lang, _ = _identifier(candidate_codes(candidates)).classify(text)
    return str(lang)


def adherence(
    hypotheses: Sequence[str],
    expected: Sequence[str | None],
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
) -> tuple[dict[str, Any], list[str | None]]:
    """The share of hypotheses in their expected language, and the confusions.

    Examples without an expected language are not scored (counted). An
    expected language outside the candidates is added to them, so it can
    be detected at all.

    :returns: the metrics (``rate`` in %, ``confusion`` as
        ``{expected: {detected: count}}``) and the detected language per
        hypothesis (``None`` where not scored).
    """
    wanted = [language_code(e) if e else None for e in expected]
    codes = candidate_codes([*candidates, *(w for w in wanted if w)])

    detected: list[str | None] = []
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for hyp, want in zip(hypotheses, wanted, strict=True):
        if want is None:
            detected.append(None)
            continue
        got = detect_language(hyp, codes)
        detected.append(got)
        confusion[want][got] += 1

    scored = sum(sum(c.values()) for c in confusion.values())
    adherent = sum(c[want] for want, c in confusion.items())
    metrics = {
        "num_examples": scored,
        "num_without_expected_language": len(wanted) - scored,
        "rate": 100.0 * adherent / scored if scored else None,
        "candidates": list(codes),
        "confusion": {
            want: dict(sorted(c.items())) for want, c in sorted(confusion.items())
        },
    }
    return metrics, detected
