"""Failure signatures as rates: loops, truncation, empty outputs, length ratio.

``repetition_stop_rate`` counts the hypotheses the repetition guard stopped;
with the guard switched off (``generation.repetition_guard.enabled: false``)
that is 0 by construction, so ``loop_rate`` also looks for a loop in the
output *text* (the guard's default rule applied to words: a suffix of 4
copies of a 2-16-word n-gram or 8 copies of one word) and counts a
hypothesis that either the guard stopped or that ends in such a loop. The
two rates are comparable between runs with the guard on and off.

Language adherence is a proportion, so its 95 % interval is Wilson's
(:func:`adherence_intervals`), overall and per expected language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from speechmapper_plugin.data.instructions.prompts import language_code
from speechmapper_plugin.generation import RepetitionGuardConfig, find_repetition_loop
from speechmapper_plugin.metrics.intervals import wilson_estimate

CHARACTER_LANGUAGES = frozenset({"zh", "ja", "ko", "th"})
"""Languages written without spaces: lengths count characters."""

TEXT_LOOP_GUARD = RepetitionGuardConfig()
"""The loop rule applied to the words of the output text."""


def text_units(text: str, lang: str | None) -> int:
    """Words, or non-space characters for languages written without spaces."""
    if lang is not None and language_code(lang) in CHARACTER_LANGUAGES:
        return sum(not ch.isspace() for ch in text)
    return len(text.split())


def ends_in_text_loop(text: str) -> bool:
    """Whether the words of ``text`` end in a loop (see the module docstring)."""
    ids: dict[str, int] = {}
    words = [ids.setdefault(word, len(ids)) for word in text.split()]
    return find_repetition_loop(words, TEXT_LOOP_GUARD) is not None


def failure_signatures(
    records: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Rates (in %) over generated records, and the per-record flags.

    A record needs ``hypothesis``; ``stop_reason`` (absent for texts not
    generated here: their guard and length rates are ``None``),
    ``reference`` and ``target_lang``/``lang`` (for the length unit) are
    optional: the length ratio covers records with a non-empty reference.
    """
    per_utt: list[dict[str, Any]] = []
    hyp_units = ref_units = with_reference = 0
    for record in records:
        hyp = str(record["hypothesis"])
        lang = record.get("target_lang") or record.get("lang")
        text_loop = ends_in_text_loop(hyp)
        stop = record.get("stop_reason")
        row: dict[str, Any] = {
            "empty": not hyp.strip(),
            "repetition_stopped": None if stop is None else stop == "repetition",
            "max_length_reached": None if stop is None else stop == "max_length",
            "text_loop": text_loop,
        }
        row["loop"] = bool(row["repetition_stopped"]) or text_loop
        if record.get("reference"):
            h, r = text_units(hyp, lang), text_units(reference_text(record), lang)
            row["length_ratio"] = h / r if r else None
            if r:
                hyp_units += h
                ref_units += r
                with_reference += 1
        per_utt.append(row)

    count = len(per_utt)

    def rate(flag: str) -> float | None:
        known = [r[flag] for r in per_utt if r[flag] is not None]
        return 100.0 * sum(known) / len(known) if known else None

    metrics = {
        "num_examples": count,
        "empty_rate": rate("empty"),
        "repetition_stop_rate": rate("repetition_stopped"),
        "max_length_rate": rate("max_length_reached"),
        "text_loop_rate": rate("text_loop"),
        "loop_rate": rate("loop"),
        "length_ratio": hyp_units / ref_units if ref_units else None,
        "length_ratio_examples": with_reference,
    }
    return metrics, per_utt


def adherence_intervals(language: Mapping[str, Any]) -> dict[str, Any]:
    """Wilson 95 % intervals (in %) of the language-adherence rate from the
    scorer's confusion counts (``{expected: {detected: count}}``):
    ``rate_ci`` over all scored outputs (``None`` without any) and
    ``rate_ci_by_language`` per expected language."""
    confusion: Mapping[str, Mapping[str, int]] = language.get("confusion") or {}
    by_language = {
        want: wilson_estimate(int(row.get(want, 0)), int(sum(row.values())))
        .scaled(100.0)
        .to_dict()
        for want, row in confusion.items()
        if sum(row.values())
    }
    scored = sum(int(sum(row.values())) for row in confusion.values())
    adherent = sum(int(row.get(want, 0)) for want, row in confusion.items())
    overall = (
        wilson_estimate(adherent, scored).scaled(100.0).to_dict() if scored else None
    )
    return {"rate_ci": overall, "rate_ci_by_language": by_language}


def reference_text(record: Mapping[str, Any]) -> str:
    """A record's reference as one text (a session's segments joined)."""
    reference = record["reference"]
    if isinstance(reference, list):
        return " ".join(str(segment) for segment in reference)
    return str(reference)
