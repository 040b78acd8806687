"""Evaluation: the paper's metrics from libraries, failure signatures as rates,
and everything that pins a score written next to it."""

from __future__ import annotations

from speechmapper_plugin.data.instructions.prompts import (
    language_code as language_code,
)
from speechmapper_plugin.evaluation.asr import asr_scores as asr_scores
from speechmapper_plugin.evaluation.failures import (
    ends_in_text_loop as ends_in_text_loop,
)
from speechmapper_plugin.evaluation.failures import (
    failure_signatures as failure_signatures,
)
from speechmapper_plugin.evaluation.language import adherence as adherence
from speechmapper_plugin.evaluation.language import detect_language as detect_language
from speechmapper_plugin.evaluation.normalizers import normalizer_for as normalizer_for
from speechmapper_plugin.evaluation.options import JudgeSection as JudgeSection
from speechmapper_plugin.evaluation.options import ScoringSection as ScoringSection
from speechmapper_plugin.evaluation.qa import exact_match as exact_match
from speechmapper_plugin.evaluation.qa import qa_scores as qa_scores
from speechmapper_plugin.evaluation.qa import token_f1 as token_f1
from speechmapper_plugin.evaluation.report import render_summary as render_summary
from speechmapper_plugin.evaluation.scoring import (
    reference_scores as reference_scores,
)
from speechmapper_plugin.evaluation.scoring import score_records as score_records
from speechmapper_plugin.evaluation.scoring import score_texts as score_texts
from speechmapper_plugin.evaluation.translation import run_comet as run_comet
from speechmapper_plugin.evaluation.translation import (
    translation_scores as translation_scores,
)
from speechmapper_plugin.evaluation.translation import (
    write_comet_inputs as write_comet_inputs,
)
from speechmapper_plugin.evaluation.versions import metric_versions as metric_versions
