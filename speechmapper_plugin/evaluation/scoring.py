"""Scoring generated records: every metric of a task, from the same code for
``recipes.evaluate`` and for any list of texts (:func:`score_texts`).

A record is one line of ``hypotheses.jsonl``: ``id``, ``task``,
``hypothesis``, and where known ``reference``, ``lang``, ``target_lang``,
``transcript`` (the source text, for COMET), ``instruction``,
``question``, ``options``, ``answers`` (spoken QA) and ``stop_reason``. Metrics are grouped by task and language:

- ``asr`` (and ``asr/<lang>`` when several languages): WER/CER, raw and
  Whisper-normalised;
- ``st/<target_lang>``: BLEU, chrF (sacreBLEU signatures) and COMET;
- ``sqa``: exact match, token F1, multiple-choice accuracy, LLM judge of
  the free-form answers (accuracy with its Wilson interval, or mean 0-5);
- ``failures`` (all records) and ``failures/<task>``: loop, truncation,
  empty-output and language-adherence rates, length ratio.

A whole recording (a *session*) has a list of reference segments as its
``reference`` (and, for COMET, a list of source segments as its
``transcript``): ASR scores the segments joined, so WER is over the whole
recording; a translation is first cut onto the segments by minimum edit
distance (:mod:`~speechmapper_plugin.evaluation.resegment`, mwerSegmenter's
procedure) and BLEU, chrF and COMET score the pieces as sentences. Its score
row lists the pieces (``segments``).

Each group has ``num_examples``, and WER/CER, BLEU, chrF and language
adherence carry their 95 % interval beside the value (``wer_ci``,
``bleu_ci``, ``chrf_ci``, ``language_adherence.rate_ci``): a bootstrap over
utterances for the corpus metrics, Wilson's interval for the proportion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from speechmapper_plugin.data.instructions.prompts import language_code
from speechmapper_plugin.evaluation.asr import asr_scores
from speechmapper_plugin.evaluation.failures import (
    adherence_intervals,
    failure_signatures,
    reference_text,
)
from speechmapper_plugin.evaluation.language import adherence
from speechmapper_plugin.evaluation.options import EVAL_TASKS, ScoringSection
from speechmapper_plugin.evaluation.qa import qa_scores, question_text
from speechmapper_plugin.evaluation.resegment import resegment, uses_characters
from speechmapper_plugin.evaluation.translation import (
    run_comet,
    translation_scores,
    write_comet_inputs,
)
from speechmapper_plugin.evaluation.versions import metric_versions
from speechmapper_plugin.metrics.intervals import wilson_estimate

Record = Mapping[str, Any]


class Judge(Protocol):
    """What scoring needs of :class:`~speechmapper_plugin.evaluation.judge.LLMJudge`."""

    num_calls: int

    @property
    def mode(self) -> str:
        """``accuracy`` or ``score`` (see ``JudgeSection.mode``)."""
        ...

    def judge(self, items: Sequence[Any]) -> Sequence[Any]: ...


def task_of(record: Record, scoring: ScoringSection) -> str:
    """The task a record is scored as (see ``ScoringSection.task``)."""
    task = scoring.task or record.get("task") or "custom"
    return task if task in EVAL_TASKS else "custom"


def expected_language(record: Record, task: str, scoring: ScoringSection) -> str | None:
    """The language the output should be in: the target language of a
    translation, else the speech's (or ``default_lang``) for ASR and QA."""
    if record.get("target_lang"):
        return language_code(str(record["target_lang"]))
    if task in ("asr", "sqa"):
        return language_code(str(record.get("lang") or scoring.default_lang))
    return None


def score_records(
    records: Sequence[Record],
    scoring: ScoringSection,
    *,
    comet_dir: Path | None = None,
    judge: Judge | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metrics of every task and language group, and one score row per record.

    :param comet_dir: Where ``<lang>/{src,hyp,ref}.txt`` go (translations
        whose records all have a ``transcript``); ``None``: no COMET.
    :param judge: Judges ``sqa`` answers with a reference, if given.
    :returns: ``metrics`` (keyed by group) and the per-record rows, in
        ``records`` order, each with ``id`` and ``task``.
    """
    rows = _rows(records, scoring)

    metrics, translations = _reference_groups(records, rows, scoring)
    if comet_dir is not None:
        for code, pairs in translations.items():
            metrics[f"st/{code}"]["comet"] = _comet(pairs, comet_dir / code, scoring)

    # Spoken QA.
    sqa = _members(records, rows, "sqa")
    if sqa:
        values, per_utt = qa_scores(
            [str(records[i]["hypothesis"]) for i in sqa],
            [str(records[i]["reference"]) for i in sqa],
            [str(records[i].get("instruction") or "") for i in sqa],
            options=[records[i].get("options") for i in sqa],
            answers=[records[i].get("answers") for i in sqa],
        )
        _merge_rows(rows, sqa, per_utt)
        if judge is not None:
            values["judge"] = _judge(records, sqa, rows, judge)
        metrics["sqa"] = values

    # Failure signatures, for everything generated.
    metrics["failures"] = _failures(records, list(range(len(records))), rows, scoring)
    for task in EVAL_TASKS:
        members = [i for i, row in enumerate(rows) if row["task"] == task]
        if members:
            metrics[f"failures/{task}"] = _failures(records, members, None, scoring)

    return metrics, rows


def reference_scores(
    records: Sequence[Record], scoring: ScoringSection | None = None
) -> dict[str, Any]:
    """The metrics of the tasks scored against a reference text alone, as
    :func:`score_records` computes them (same names, same numbers): ``asr``
    (and ``asr/<lang>``) and ``st/<target_lang>`` (BLEU, chrF), without
    COMET. What ``recipes.generate``'s summary holds."""
    scoring = scoring or ScoringSection()
    return _reference_groups(records, _rows(records, scoring), scoring)[0]


def _rows(records: Sequence[Record], scoring: ScoringSection) -> list[dict[str, Any]]:
    return [{"id": r.get("id"), "task": task_of(r, scoring)} for r in records]


def _members(
    records: Sequence[Record], rows: list[dict[str, Any]], task: str
) -> list[int]:
    """The records scored as ``task`` that have a reference."""
    return [
        i
        for i, row in enumerate(rows)
        if row["task"] == task and records[i].get("reference")
    ]


@dataclass(frozen=True)
class _Pairs:
    """One target language's sentence pairs, a session's pieces included."""

    hypotheses: list[str]
    references: list[str]
    sources: list[str | None]
    owners: list[int]
    """The record of each pair."""


def _translation_pairs(
    records: Sequence[Record], members: list[int], target_lang: str
) -> tuple[_Pairs, dict[int, list[str]]]:
    """The pairs to score, a session's hypothesis cut onto its segments (see
    the module docstring), and each session's pieces by record."""
    pairs = _Pairs([], [], [], [])
    pieces: dict[int, list[str]] = {}
    for i in members:
        record = records[i]
        reference, source = record["reference"], record.get("transcript")
        if not isinstance(reference, list):
            references, hypotheses = [str(reference)], [str(record["hypothesis"])]
            sources = [None if source is None else str(source)]
        else:
            references = [str(segment) for segment in reference]
            hypotheses = resegment(
                str(record["hypothesis"]),
                references,
                characters=uses_characters(target_lang),
            ).segments
            pieces[i] = hypotheses
            if isinstance(source, list) and len(source) != len(references):
                raise ValueError(
                    f"Record {record.get('id')!r} has {len(references)} reference segments but {len(source)} source segments (`transcript`); they must be line-aligned."
                )
            sources = (
                [str(s) for s in source]
                if isinstance(source, list)
                else [None] * len(references)
            )
        pairs.hypotheses.extend(hypotheses)
        pairs.references.extend(references)
        pairs.sources.extend(sources)
        pairs.owners.extend([i] * len(references))
    return pairs, pieces


def _reference_groups(
    records: Sequence[Record], rows: list[dict[str, Any]], scoring: ScoringSection
) -> tuple[dict[str, Any], dict[str, _Pairs]]:
    """ASR (one group per language, plus the whole when there are several)
    and ST (one group per target language); the score rows get the
    per-utterance values. Returns the metrics and each target language's
    sentence pairs."""
    metrics: dict[str, Any] = {}

    asr = _members(records, rows, "asr")
    if asr:
        langs = [str(records[i].get("lang") or scoring.default_lang) for i in asr]
        values, per_utt = _asr(records, asr, langs)
        metrics["asr"] = values
        _merge_rows(rows, asr, per_utt)
        codes = sorted({language_code(lang) for lang in langs})
        if len(codes) > 1:
            for code in codes:
                part = [
                    i
                    for i, lang in zip(asr, langs, strict=True)
                    if language_code(lang) == code
                ]
                metrics[f"asr/{code}"] = _asr(records, part, [code] * len(part))[0]

    st = _members(records, rows, "st")
    targets = [language_code(str(records[i].get("target_lang") or "und")) for i in st]
    translations: dict[str, _Pairs] = {}
    for code in sorted(set(targets)):
        part = [i for i, t in zip(st, targets, strict=True) if t == code]
        pairs, pieces = _translation_pairs(records, part, code)
        values, per_pair = translation_scores(pairs.hypotheses, pairs.references, code)
        if pieces:
            values["num_sessions"] = len(pieces)
        for i, owner in enumerate(pairs.owners):
            if owner in pieces:
                rows[owner].setdefault("segments", []).append(
                    {"hypothesis": pairs.hypotheses[i], **per_pair[i]}
                )
            else:
                rows[owner].update(per_pair[i])
        metrics[f"st/{code}"] = values
        translations[code] = pairs

    return metrics, translations


def _asr(
    records: Sequence[Record], members: list[int], langs: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return asr_scores(
        [reference_text(records[i]) for i in members],
        [str(records[i]["hypothesis"]) for i in members],
        langs,
    )


def _failures(
    records: Sequence[Record],
    members: list[int],
    rows: list[dict[str, Any]] | None,
    scoring: ScoringSection,
) -> dict[str, Any]:
    picked = [records[i] for i in members]
    values, per_utt = failure_signatures(picked)
    expected = [
        expected_language(records[i], task_of(records[i], scoring), scoring)
        for i in members
    ]
    language, detected = adherence(
        [str(r["hypothesis"]) for r in picked], expected, scoring.language_candidates
    )
    values["language_adherence"] = {**language, **adherence_intervals(language)}
    if rows is not None:
        for row, want, got in zip(per_utt, expected, detected, strict=True):
            row["expected_lang"] = want
            row["detected_lang"] = got
        _merge_rows(rows, members, per_utt)
    return values


def _comet(pairs: _Pairs, directory: Path, scoring: ScoringSection) -> dict[str, Any]:
    if not scoring.comet:
        return {"score": None, "note": "`scoring.comet` is off."}
    sources = pairs.sources
    if not all(sources):
        missing = sum(not s for s in sources)
        return {
            "score": None,
            "note": f"{missing} of {len(sources)} translations have no source transcript (the instruction file's `transcript`; a session's as a list of segments); COMET needs every source.",
        }
    files = write_comet_inputs(
        directory, [str(s) for s in sources], pairs.hypotheses, pairs.references
    )
    return run_comet(files, model=scoring.comet_model)


def _judge(
    records: Sequence[Record],
    members: list[int],
    rows: list[dict[str, Any]],
    judge: Judge,
) -> dict[str, Any]:
    """The judge's verdicts on the free-form answers among ``members`` (a
    multiple-choice answer is scored by the choice rule, not judged): in mode
    ``accuracy`` the share judged correct, with its Wilson interval, over the
    answers with a valid verdict; in mode ``score`` the mean rating.
    Unparseable verdicts and prompts too long for the judge are counted, not
    scored."""
    from speechmapper_plugin.evaluation.judge import JudgeItem

    free_form = [i for i in members if "choice_selected" not in rows[i]]
    items = [
        JudgeItem(
            question=str(
                records[i].get("question")
                or question_text(str(records[i].get("instruction") or ""))
            ),
            reference=str(records[i]["reference"]),
            hypothesis=str(records[i]["hypothesis"]),
        )
        for i in free_form
    ]
    mode = judge.mode
    calls_before = judge.num_calls
    verdicts = judge.judge(items) if items else []
    for i, verdict in zip(free_form, verdicts, strict=True):
        if mode == "accuracy":
            rows[i]["judge_correct"] = verdict.correct
        else:
            rows[i]["judge_score"] = verdict.score
        rows[i]["judge_raw"] = verdict.raw
        skip = getattr(verdict, "skip_reason", None)
        if skip is not None:
            rows[i]["judge_skip_reason"] = skip
    skipped = sum(getattr(v, "skip_reason", None) is not None for v in verdicts)
    parsed = [v for v in verdicts if v.parsed]
    values: dict[str, Any] = {
        "mode": mode,
        "num_examples": len(items),
        "num_multiple_choice": len(members) - len(free_form),
        "num_scored": len(parsed),
        "num_skipped": skipped,
        "num_unparsed": len(verdicts) - len(parsed) - skipped,
    }
    if mode == "accuracy":
        correct = sum(bool(v.correct) for v in parsed)
        values["num_correct"] = correct
        values["accuracy"] = (
            wilson_estimate(correct, len(parsed)).scaled(100.0).to_dict()
            if parsed
            else None
        )
    else:
        scores = [float(v.score) for v in parsed]
        values["mean_score"] = sum(scores) / len(scores) if scores else None
    values["num_calls"] = judge.num_calls - calls_before
    values["num_cached"] = sum(bool(v.cached) for v in verdicts)
    return values


def _merge_rows(
    rows: list[dict[str, Any]],
    members: Sequence[int],
    values: Sequence[Mapping[str, Any]],
) -> None:
    for i, value in zip(members, values, strict=True):
        rows[i].update(value)


def score_texts(
    task: str,
    hypotheses: Sequence[str],
    references: Sequence[str | list[str]],
    *,
    langs: Sequence[str | None] | None = None,
    target_langs: Sequence[str | None] | None = None,
    sources: Sequence[str | list[str] | None] | None = None,
    instructions: Sequence[str] | None = None,
    questions: Sequence[str | None] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
    answers: Sequence[Sequence[str] | None] | None = None,
    scoring: ScoringSection | None = None,
    comet_dir: Path | None = None,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """Score any hypothesis/reference lists exactly as ``recipes.evaluate`` does
    (e.g. a no-translation baseline: the transcripts as "translations").

    :param task: ``asr``, ``st``, ``sqa`` or ``custom``.
    :param references: One text per hypothesis, or a whole recording's
        list of reference segments (see the module docstring).
    :param langs: The speech's language per pair (ASR normaliser, expected
        answer language); default ``scoring.default_lang``.
    :param target_langs: The translation target per pair (``st``).
    :param sources: Source transcripts (COMET).
    :param instructions: The instruction per pair (``sqa``: multiple-choice
        options listed in it, and the judge's question).
    :param questions: The question alone (``sqa``, for the judge).
    :param options: Multiple-choice options per pair (``sqa``).
    :param answers: Every acceptable answer per pair (``sqa``).
    :returns: ``{"metrics": ..., "scores": [...], "versions": ...}``.
    """
    if task not in EVAL_TASKS:
        raise ValueError(f"`task` must be one of {EVAL_TASKS}, but is '{task}'.")
    count = len(hypotheses)
    if len(references) != count:
        raise ValueError(
            f"`hypotheses` and `references` must have the same length, but have {count} and {len(references)}."
        )
    columns: dict[str, Sequence[Any] | None] = {
        "lang": langs,
        "target_lang": target_langs,
        "transcript": sources,
        "instruction": instructions,
        "question": questions,
        "options": options,
        "answers": answers,
    }
    for name, values in columns.items():
        if values is not None and len(values) != count:
            raise ValueError(
                f"`{name}` must give one value per hypothesis ({count}), but gives {len(values)}."
            )
    if task == "st" and target_langs is None:
        raise ValueError("`task='st'` needs `target_langs`.")

    records = []
    for i, (hyp, ref) in enumerate(zip(hypotheses, references, strict=True)):
        record: dict[str, Any] = {
            "id": str(i),
            "task": task,
            "hypothesis": hyp,
            "reference": ref,
        }
        for name, values in columns.items():
            if values is not None and values[i] is not None:
                record[name] = values[i]
        records.append(record)

    metrics, rows = score_records(
        records, scoring or ScoringSection(), comet_dir=comet_dir, judge=judge
    )
    return {"metrics": metrics, "scores": rows, "versions": metric_versions()}
