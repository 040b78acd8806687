"""Translation metrics: sacreBLEU BLEU and chrF with their signatures, and the
files COMET scores.

BLEU tokenises Chinese targets with sacreBLEU's ``zh`` tokenizer, Japanese and
Korean by character (``char``; the ``ja-mecab``/``ko-mecab`` tokenizers need
extra packages) and every other target with ``13a`` (the WMT default). The
signature strings pin every setting that changes a score.

Both are corpus metrics (ratios of n-gram counts summed over sentences), so
their 95 % intervals come from a bootstrap over sentences that resamples
sacreBLEU's own per-sentence sufficient statistics and scores each resample
with sacreBLEU's own formula: the point value is sacreBLEU's corpus score.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sacrebleu.metrics import BLEU, CHRF

from speechmapper_plugin.data.instructions.prompts import language_code
from speechmapper_plugin.metrics.intervals import bootstrap_estimate

COMET_MODEL = "Unbabel/wmt22-comet-da"
COMET_COMMAND = "comet-score"

COMET_ENV_HINT = (
    "unbabel-comet pins an older numpy than fairseq2 0.8.1; install it in its own "
    "environment (`python -m venv ~/comet-env && ~/comet-env/bin/pip install "
    "unbabel-comet`) and put `~/comet-env/bin` on PATH, or run the command above there."
)


BLEU_TOKENIZERS = {"zh": "zh", "ja": "char", "ko": "char"}
"""sacreBLEU tokenizers for targets without spaces between words (13a otherwise)."""


def bleu_tokenizer(target_lang: str) -> str:
    """``zh`` for Chinese, ``char`` for Japanese and Korean, ``13a`` otherwise."""
    return BLEU_TOKENIZERS.get(language_code(target_lang), "13a")


def translation_metrics(target_lang: str) -> dict[str, BLEU | CHRF]:
    """The corpus metrics of a target language, by summary name."""
    return {"bleu": BLEU(tokenize=bleu_tokenizer(target_lang)), "chrf": CHRF()}


def sentence_statistics(
    metric: BLEU | CHRF, hypotheses: Sequence[str], references: Sequence[str]
) -> NDArray[np.float64]:
    """``(n, k)`` per-sentence sufficient statistics, as sacreBLEU sums them
    for its corpus score (BLEU: lengths and n-gram matches/totals; chrF:
    character and word n-gram counts)."""
    # sacreBLEU's statistics API is underscored but stable since 2.0: it is
    # what its own paired bootstrap (`sacrebleu.significance`) resamples.
    stats = metric._extract_corpus_statistics(list(hypotheses), [list(references)])
    return np.asarray(stats, dtype=np.float64).reshape(len(hypotheses), -1)


def score_of_statistics(
    metric: BLEU | CHRF,
) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    """sacreBLEU's score of summed statistics ``(..., k)``, for every row
    (what :func:`~speechmapper_plugin.metrics.intervals.bootstrap_estimate`
    calls on the corpus and on all resamples)."""

    def score(sums: NDArray[np.float64]) -> NDArray[np.float64]:
        flat = np.asarray(sums).reshape(-1, np.shape(sums)[-1])
        scores = [
            metric._compute_score_from_stats([int(v) for v in row]).score
            for row in np.rint(flat)
        ]
        return np.asarray(scores, dtype=np.float64).reshape(np.shape(sums)[:-1])

    return score


def translation_scores(
    hypotheses: Sequence[str], references: Sequence[str], target_lang: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Corpus BLEU and chrF of one target language with their bootstrap
    intervals over sentences (``bleu_ci``, ``chrf_ci``), and sentence scores.

    :returns: the corpus metrics (with sacreBLEU signatures) and one dict per
        hypothesis (sentence BLEU and chrF, for finding bad examples only:
        sentence BLEU is not an average of anything reported).
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"`hypotheses` and `references` must have the same length, but have {len(hypotheses)} and {len(references)}."
        )
    if not hypotheses:
        raise ValueError("BLEU and chrF need at least one hypothesis.")

    metrics: dict[str, Any] = {"num_examples": len(hypotheses)}
    signatures = {}
    for name, metric in translation_metrics(target_lang).items():
        estimate = bootstrap_estimate(
            sentence_statistics(metric, hypotheses, references),
            score_of_statistics(metric),
        )
        metrics[name] = estimate.value
        metrics[f"{name}_ci"] = estimate.to_dict()
        signatures[f"{name}_signature"] = str(metric.get_signature())
    metrics.update(signatures)

    chrf = CHRF()
    sentence_bleu = BLEU(tokenize=bleu_tokenizer(target_lang), effective_order=True)
    per_utt = [
        {
            "sentence_bleu": sentence_bleu.sentence_score(hyp, [ref]).score,
            "sentence_chrf": chrf.sentence_score(hyp, [ref]).score,
        }
        for hyp, ref in zip(hypotheses, references, strict=True)
    ]
    return metrics, per_utt


def write_comet_inputs(
    directory: Path,
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
) -> dict[str, Path]:
    """``src.txt``, ``hyp.txt`` and ``ref.txt``, one segment per line, as
    ``comet-score -s -t -r`` reads them. Line breaks inside a segment become
    spaces (they would shift every following line)."""
    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError("COMET needs one source and one reference per hypothesis.")
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, lines in (("src", sources), ("hyp", hypotheses), ("ref", references)):
        path = directory / f"{name}.txt"
        path.write_text(
            "".join(" ".join(line.split()) + "\n" for line in lines), encoding="utf-8"
        )
        files[name] = path
    return files


def comet_command(files: dict[str, Path], *, model: str = COMET_MODEL) -> list[str]:
    return [
        COMET_COMMAND,
        "-s",
        str(files["src"]),
        "-t",
        str(files["hyp"]),
        "-r",
        str(files["ref"]),
        "--model",
        model,
    ]


_SYSTEM_SCORE = re.compile(r"score:\s*([-+0-9.eE]+)\s*$")


def run_comet(
    files: dict[str, Path], *, model: str = COMET_MODEL, timeout: float | None = None
) -> dict[str, Any]:
    """COMET's system score if ``comet-score`` is on PATH, else the command to run.

    ``comet-score`` prints one line per segment and ends with the system
    score (``... score: 0.8312``); that last number is returned.
    """
    command = comet_command(files, model=model)
    result: dict[str, Any] = {"model": model, "command": shlex.join(command)}
    if shutil.which(COMET_COMMAND) is None:
        result["score"] = None
        result["note"] = (
            f"`{COMET_COMMAND}` is not on PATH; run the command above. {COMET_ENV_HINT}"
        )
        return result

    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    match = _SYSTEM_SCORE.search(lines[-1]) if lines else None
    if done.returncode != 0 or match is None:
        result["score"] = None
        result["note"] = (
            f"`{COMET_COMMAND}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
        return result
    result["score"] = float(match.group(1))
    return result
