"""The quickstart's figures with their intervals and the σ comparison over
seeds, on hand-made summaries (the runs themselves are the slow test's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from speechmapper_plugin.quickstart.seeds import (
    SEEDS_JSON,
    aggregate_seeds,
    format_seeds,
    main,
    write_seeds,
)
from speechmapper_plugin.quickstart.summary import format_table, split_label


def _ci(value: float, low: float, high: float, n: int = 200) -> dict[str, Any]:
    return {"value": value, "low": low, "high": high, "n": n, "confidence": 0.95}


def _st(chrf: float, bleu: float, adherence: float) -> dict[str, Any]:
    return {
        "chrf": chrf,
        "bleu": bleu,
        "adherence": adherence,
        "chrf_ci": _ci(chrf, chrf - 2, chrf + 2),
        "bleu_ci": _ci(bleu, bleu - 3, bleu + 3),
        "adherence_ci": _ci(adherence, adherence - 4, 100.0),
        "n": 200,
    }


def _summary(wer: float, chrf09: float, chrf0: float, low: float) -> dict[str, Any]:
    """A quickstart summary with σ=0.9 chrF ``chrf09``, σ=0 ``chrf0`` and the
    paired difference's lower bound ``low``."""
    asr = {"wer": wer, "wer_ci": _ci(wer, wer - 3, wer + 3), "n": 200}
    st = {lang: _st(chrf09, 30.0, 98.0) for lang in ("fr", "de")}
    return {
        "asr": asr,
        "st": st,
        "repetition_stop_rate": 0.5,
        "sigma0": {
            "asr": {**asr, "wer": wer - 2},
            "st": {lang: _st(chrf0, 28.0, 99.0) for lang in ("fr", "de")},
            "repetition_stop_rate": 0.2,
        },
        "text_upper_bound": {"asr": asr, "st": st},
        "baseline_no_translation": {"st": st},
        "shuffled_speech_control": {"asr": asr},
        "sigma_difference": {
            "asr": {"wer": _ci(2.0, 0.5, 3.5)},
            **{
                lang: {
                    "chrf": _ci(chrf09 - chrf0, low, low + 3),
                    "bleu": _ci(2.0, -1.0, 5.0),
                }
                for lang in ("fr", "de")
            },
        },
        "stage1": {
            "heldout_mse_word": 0.1,
            "heldout_embedding_wer": 26.1,
            "dev_mse_word": 0.06,
            "dev_embedding_wer": 15.3,
        },
        "eet": {"threshold_mse": 0.001},
        "timing": {"total_s": 900.0, "steps": {}},
    }


def test_the_table_gives_n_intervals_and_the_paired_difference() -> None:
    table = format_table(_summary(34.0, 51.9, 49.2, low=1.2))
    assert "Over n = 200 test utterances" in table
    assert "[31.0, 37.0]" in table  # σ=0.9 WER interval
    assert "[49.9, 53.9]" in table  # its fr chrF interval
    assert "ASR WER +2.0 [+0.5, +3.5]" in table
    assert "fr chrF +2.7 [+1.2, +4.2], BLEU +2.0 [-1.0, +5.0]" in table


def test_a_summary_without_intervals_still_renders() -> None:
    # A resumed run whose references were scored before intervals existed.
    summary = _summary(34.0, 51.9, 49.2, low=1.2)
    for lang in ("fr", "de"):
        summary["baseline_no_translation"]["st"][lang] = {
            "chrf": 14.0,
            "bleu": 0.4,
            "adherence": 0.0,
        }
    del summary["sigma_difference"]
    table = format_table(summary)
    assert "ASR WER - ;" not in table and "ASR WER -;" in table


def test_the_stage1_plot_names_the_voices() -> None:
    assert split_label("dev") == "dev (voice en-us-nyc+f4)"
    assert split_label("test") == "test (voice en-gb-scotland+f2)"


def test_seeds_are_aggregated_into_mean_spread_and_paired_verdicts(
    tmp_path: Path,
) -> None:
    summaries = {
        0: _summary(34.0, 51.9, 49.2, low=1.2),  # difference +2.7, interval > 0
        1: _summary(30.0, 50.0, 50.5, low=-2.0),  # -0.5, interval spans 0
        2: _summary(32.0, 49.0, 47.0, low=0.1),  # +2.0, interval > 0
    }
    aggregate = aggregate_seeds(summaries)
    assert aggregate["seeds"] == [0, 1, 2]
    wer = aggregate["metrics"]["ASR WER"]
    assert wer["sigma09"]["values"] == [34.0, 30.0, 32.0]
    assert wer["sigma09"]["mean"] == pytest.approx(32.0)
    assert wer["sigma09"]["sd"] == pytest.approx(2.0)  # sqrt((4 + 4 + 0) / 2)
    assert wer["sigma0"]["mean"] == pytest.approx(30.0)

    chrf = aggregate["metrics"]["fr chrF"]["difference"]
    assert chrf["values"] == pytest.approx([2.7, -0.5, 2.0])
    assert chrf["mean"] == pytest.approx(4.2 / 3)
    assert (chrf["min"], chrf["max"]) == pytest.approx((-0.5, 2.7))
    assert chrf["seeds_above_zero"] == 2 and chrf["seeds_below_zero"] == 0
    assert "difference" not in aggregate["metrics"]["de adherence %"]

    write_seeds(tmp_path, aggregate)
    assert json.loads((tmp_path / SEEDS_JSON).read_text()) == aggregate
    table = format_seeds(aggregate)
    assert (
        "| ASR WER | 32.0 ± 2.0 (30.0 to 34.0) | 30.0 ± 2.0 (28.0 to 32.0) |" in table
    )
    assert "| fr chrF |" in table and "+1.4 ± 1.7 (-0.5 to +2.7) | 2 | 0 |" in table

    with pytest.raises(ValueError, match="No seed"):
        aggregate_seeds({})


def test_the_seeds_command_refuses_one_seed_or_a_single_seed_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path), "--seeds", "3"]) == 2
    assert "at least two different seeds" in capsys.readouterr().err
    assert main([str(tmp_path), "--seed", "3"]) == 2
    assert "--seeds S" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
