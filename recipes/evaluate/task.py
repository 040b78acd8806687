"""The evaluate unit: generate's unit, whose summary also holds the scores.

Rank 0 scores the merged hypotheses: ``scores.jsonl`` (one row per
hypothesis, in the same order), ``summary.json`` (metrics per task and
language, failure signatures, and what produced them: models and checkpoint
step, prompts, generation settings, seed, normaliser and metric versions,
sacreBLEU signatures) and ``summary.md`` (the same as tables). Scoring reads
only the merged hypotheses, so a resumed run scores exactly what an
uninterrupted one would; judge verdicts come from the judge's cache.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, final

import torch
from fairseq2.data_type import DataType
from fairseq2.logging import log
from typing_extensions import override

from recipes.generate.task import GenerateUnit
from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.evaluation import (
    JudgeSection,
    ScoringSection,
    metric_versions,
    render_summary,
    score_records,
)
from speechmapper_plugin.evaluation.scoring import Judge
from speechmapper_plugin.evaluation.versions import package_version

SCORES_FILE = "scores.jsonl"
SUMMARY_MD_FILE = "summary.md"
COMET_DIR = "comet"
JUDGE_CACHE_DIR = "judge_cache"


@final
class EvaluateUnit(GenerateUnit):
    def __init__(
        self,
        *,
        scoring: ScoringSection,
        judge: JudgeSection,
        judge_dtype: DataType | None,
        device: torch.device,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._scoring = scoring
        self._judge_section = judge
        self._judge_dtype = judge_dtype
        self._device = device

    @override
    def _summarize(
        self, records: list[dict[str, Any]], skipped: list[BadRow]
    ) -> dict[str, Any]:
        summary = super()._summarize(records, skipped)

        out = self._output_dir
        judge = self._load_judge()
        metrics, rows = score_records(
            records, self._scoring, comet_dir=out / COMET_DIR, judge=judge
        )

        summary["metrics"] = metrics
        summary["scoring"] = _plain(asdict(self._scoring))
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
        return summary

    def _load_judge(self) -> Judge | None:
        section = self._judge_section
        if not section.enabled:
            return None

        from speechmapper_plugin.evaluation.judge import LLMJudge

        card = section.card or self._pipeline.llm_name
        cache_dir = section.cache_dir or self._output_dir / JUDGE_CACHE_DIR
        log.info("Loading the judge LLM '{}'.", card)
        return LLMJudge.from_card(
            card,
            cache_dir=cache_dir.expanduser(),
            prompt_file=section.prompt_file,
            device=self._device,
            dtype=self._judge_dtype,
            batch_size=section.batch_size,
        )

    def _describe_judge(self, judge: Judge | None) -> dict[str, Any]:
        described = _plain(asdict(self._judge_section))
        if judge is not None:
            described["card"] = self._judge_section.card or self._pipeline.llm_name
            described["identity"] = getattr(judge, "identity", None)
            prompt = getattr(judge, "prompt", None)
            text = getattr(prompt, "text", None)
            if isinstance(text, str):
                import hashlib

                described["prompt_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        return described


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
