"""The evaluate recipe's scorer: the generation unit calls it on the merged
hypotheses, and the summary then holds the scores.

Rank 0 scores the merged hypotheses: ``scores.jsonl`` (one row per
hypothesis, in the same order), ``summary.json`` (metrics per task and
language, failure signatures, and what produced them: models and checkpoint
step, prompts, generation settings, seed, normaliser and metric versions,
sacreBLEU signatures) and ``summary.md`` (the same as tables). Scoring reads
only the merged hypotheses, so a resumed run scores exactly what an
uninterrupted one would; judge verdicts come from the judge's cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, final

import torch
from fairseq2.logging import log

from recipes.generation import plain
from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.evaluation import (
    JudgeSection,
    ScoringSection,
    metric_versions,
    render_summary,
    score_records,
)
from speechmapper_plugin.evaluation.options import JUDGE_CARD_REQUIRED
from speechmapper_plugin.evaluation.scoring import Judge
from speechmapper_plugin.evaluation.sessions import attach_segments
from speechmapper_plugin.evaluation.versions import package_version
from speechmapper_plugin.models.projector_base import base_card_name

SCORES_FILE = "scores.jsonl"
SUMMARY_MD_FILE = "summary.md"
COMET_DIR = "comet"
JUDGE_CACHE_DIR = "judge_cache"


@final
class EvaluationScorer:
    """Scores every task (``scoring``), QA answers also by the judge
    (``judge``); a :class:`~speechmapper_plugin.generation_task.RunScorer`."""

    def __init__(
        self,
        *,
        scoring: ScoringSection,
        judge: JudgeSection,
        evaluated_llm: str,
        output_dir: Path,
        device: torch.device,
        sessions: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """:param evaluated_llm: The evaluated LLM's card: a judge of the
        same card is self-judging (allowed, with a warning), never a default.
        :param sessions: A whole-session segments file's lines: each record
        is scored against its session's reference segments
        (:func:`~speechmapper_plugin.evaluation.sessions.attach_segments`)."""
        self._scoring = scoring
        self._judge_section = judge
        self._evaluated_llm = evaluated_llm
        self._output_dir = output_dir
        self._device = device
        self._sessions = sessions

    def __call__(self, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        out = self._output_dir
        judge = self._load_judge()
        if self._sessions is not None:
            records = attach_segments(records, self._sessions)
            log.info(
                "Scoring {} whole recordings against their reference segments.",
                len(records),
            )
        metrics, rows = score_records(
            records, self._scoring, comet_dir=out / COMET_DIR, judge=judge
        )

        summary["metrics"] = metrics
        summary["scoring"] = plain(asdict(self._scoring))
        summary["judge"] = self._describe_judge(judge)
        summary["versions"] = {
            **metric_versions(),
            "fairseq2": package_version("fairseq2"),
            "torch": package_version("torch"),
            "speechmapper-fairseq2": package_version("speechmapper-fairseq2"),
        }
        summary["signatures"] = {
            group: {
                key: values[key]
                for key in ("bleu_signature", "chrf_signature", "normalizers")
                if key in values
            }
            for group, values in metrics.items()
            if any(k in values for k in ("bleu_signature", "normalizers"))
        }

        atomic_write_text(
            out / SCORES_FILE,
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
        )
        atomic_write_text(out / SUMMARY_MD_FILE, render_summary(summary))
        log.info(
            "Scores in {}, tables in {}.", out / SCORES_FILE, out / SUMMARY_MD_FILE
        )

    def _load_judge(self) -> Judge | None:
        section = self._judge_section
        if not section.enabled:
            return None

        from speechmapper_plugin.evaluation.judge import LLMJudge

        card = section.card
        if not card:
            raise ValueError(JUDGE_CARD_REQUIRED)
        if self._self_judging:
            log.warning(
                "The judge '{}' is the evaluated LLM: it judges its own answers (self-judging); give `judge.card` another LLM's card for a judge independent of the model under test.",
                card,
            )
        cache_dir = section.cache_dir or self._output_dir / JUDGE_CACHE_DIR
        log.info("Loading the judge LLM '{}' ({} mode).", card, section.mode)
        return LLMJudge.from_card(
            card,
            cache_dir=cache_dir.expanduser(),
            mode=section.mode,
            prompt_file=section.prompt_file,
            device=self._device,
            dtype=None if section.dtype is None else getattr(torch, section.dtype),
            batch_size=section.batch_size,
        )

    @property
    def _self_judging(self) -> bool:
        card = self._judge_section.card
        return card is not None and base_card_name(card) == base_card_name(
            self._evaluated_llm
        )

    def _describe_judge(self, judge: Judge | None) -> dict[str, Any]:
        described = plain(asdict(self._judge_section))
        if judge is not None:
            described["self_judging"] = self._self_judging
            described["identity"] = getattr(judge, "identity", None)
            prompt = getattr(judge, "prompt", None)
            text = getattr(prompt, "text", None)
            if isinstance(text, str):
                described["prompt_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        return described
