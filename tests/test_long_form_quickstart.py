"""``python -m speechmapper_plugin.quickstart.long_form`` at tiny size: a
45 s recording of espeak utterances (longer than the tiny projector's
32.8 s) built from a quickstart-like test split, transcribed long-form, and
its WERs checked against jiwer with Whisper's normaliser on the written
hypotheses (the tiny random LLM's output is gibberish; the plumbing and
the arithmetic are what is tested); ``--tune`` at tiny size; the segments'
edge errors against hand-worked values."""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.quickstart.long_form import Recording, Utterance, edge_errors
from speechmapper_plugin.speech_llm import SkippedInput
from speechmapper_plugin.speech_llm.audio_inputs import AudioInputError
from speechmapper_plugin.speech_llm.long_form import LongFormResult, TimedSegment
from tests.support.audio import has_espeak, synthesize_corpus
from tests.support.cards import SessionCards
from tests.support.llm import training_sentences
from tests.support.recipes import run_module

needs_espeak = pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")


def wer(refs: list[str], hyps: list[str]) -> float:
    english = EnglishTextNormalizer()
    return 100 * jiwer.wer(
        [" ".join(english(t).split()) for t in refs],
        [" ".join(english(t).split()) for t in hyps],
    )


@needs_espeak
@pytest.mark.slow
def test_the_figures_of_a_tiny_quickstart_like_run(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    root = tmp_path / "qs"
    synthesize_corpus(
        root / "corpus", training_sentences(400)[200:208], manifest_name="test.tsv"
    )
    run_module(
        "speechmapper_plugin.quickstart.long_form",
        str(root),
        "--projector",
        "test_projector_llama",
        "--sfm",
        "test_sm4t_hf",
        "--llm",
        "test_llama",
        "--cards",
        str(test_cards.card_dir),
        "--minutes",
        "0.75",
        "--rss-minutes",
        "--no-recipes",
    )

    out = root / "long_form"
    figures = json.loads((out / "figures.json").read_text())
    (recording,) = figures["recordings"].values()
    assert recording["seconds"] >= 45
    assert set(recording["runs"]) == {
        "pipeline fixed",
        "pipeline vad",
        "pipeline vad-short",
    }
    # vad-short: no longer than the longest utterance (no train split here:
    # the test split's), rounded up to 0.5 s.
    longest = max(
        int(row.split("\t")[2])
        for row in (root / "corpus/test.tsv").read_text().splitlines()[1:]
    )
    short = figures["segmenters"]["vad-short"]["max_seconds"]
    assert short - 0.5 < longest / 16_000 <= short

    # The recording holds each listed utterance's audio where it says.
    audio = load_audio(recording["path"]).numpy()
    lines = (out / "recording_0.75min.utterances.jsonl").read_text().splitlines()
    utterances = [json.loads(line) for line in lines]
    assert recording["num_utterances"] == len(utterances) > 8  # cycled
    wavs = {
        row.split("\t")[0]: root / "corpus" / row.split("\t")[1]
        for row in (root / "corpus/test.tsv").read_text().splitlines()[1:]
    }
    for u in utterances[:3]:
        speech = load_audio(wavs[u["id"]]).numpy()
        start = round(u["start"] * 16_000)
        np.testing.assert_allclose(
            audio[start : start + speech.size], speech, atol=1e-4
        )

    refs = [u["text"] for u in utterances]
    hyps = {
        json.loads(line)["id"]: json.loads(line)["hypothesis"]
        for line in (out / "per_utterance.jsonl").read_text().splitlines()
    }
    per_utt = [hyps[u["id"]] for u in utterances]
    for values in recording["runs"].values():
        assert values["num_segments"] >= 2  # longer than one window
        assert values["per_utterance_wer"] == pytest.approx(wer(refs, per_utt))
        assert values["whole_recording_wer"] == pytest.approx(
            wer([" ".join(refs)], [values["text"]])
        )
        ci = values["per_utterance_wer_ci"]
        assert ci["low"] <= values["per_utterance_wer"] <= ci["high"]
        assert ci["n"] == len(utterances)
        assert values["difference"]["value"] == pytest.approx(
            values["resegmented_wer"] - values["per_utterance_wer"]
        )
    runs = recording["runs"]
    assert (
        runs["pipeline vad-short"]["num_segments"]
        > runs["pipeline vad"]["num_segments"]
    )
    assert "| recording_0.75min" in (out / "figures.md").read_text()


def test_edge_errors_match_each_utterance_to_its_most_overlapping_segment(
    tmp_path: Path,
) -> None:
    spans = [(1.0, 3.0), (4.0, 6.0), (8.0, 9.0), (20.0, 21.0)]
    recording = Recording(
        "r",
        tmp_path / "r.wav",
        [Utterance(f"u{i}", tmp_path, "x", a, b) for i, (a, b) in enumerate(spans)],
    )
    skipped = SkippedInput(AudioInputError("segment", "not decoded here"))
    result = LongFormResult(
        [TimedSegment(0.9, 3.2, skipped), TimedSegment(4.05, 9.1, skipped)]
    )

    errors = edge_errors(recording, result)

    # u0: -100 / +200 ms; u1 (1.95 s of the second segment): +50 / +3100;
    # u2 (1.0 s of it): -3950 / +100; u3: no segment.
    assert errors == {
        "onset_mae_ms": pytest.approx((100 + 50 + 3950) / 3, abs=0.05),
        "onset_mean_ms": pytest.approx((-100 + 50 - 3950) / 3, abs=0.05),
        "offset_mae_ms": pytest.approx((200 + 3100 + 100) / 3, abs=0.05),
        "offset_mean_ms": pytest.approx((200 + 3100 + 100) / 3, abs=0.05),
        "shared": 2,
        "missed": 1,
    }


@needs_espeak
@pytest.mark.slow
def test_tune_sweeps_dev_and_scores_the_choice_on_test(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    root = tmp_path / "qs"
    sentences = training_sentences(400)
    synthesize_corpus(root / "corpus", sentences[200:204], manifest_name="test.tsv")
    synthesize_corpus(root / "corpus", sentences[210:214], manifest_name="dev.tsv")
    run_module(
        "speechmapper_plugin.quickstart.long_form",
        str(root),
        *("--projector", "test_projector_llama", "--sfm", "test_sm4t_hf"),
        *("--llm", "test_llama", "--cards", str(test_cards.card_dir)),
        *("--tune", "--tune-dev-minutes", "0.25", "--minutes", "0.25"),
    )

    out = root / "long_form"
    tuning = json.loads((out / "tuning.json").read_text())
    dev_runs = tuning["dev"]["runs"]
    # 5 paddings, 3 end paddings past the best (fewer if it is 100), 2
    # thresholds, a shorter min silence where the pads allow, 30 s segments.
    assert 9 <= len(dev_runs) <= 12
    pads = [v["segmenter"]["speech_pad_ms"] for v in dev_runs.values()]
    assert pads[:5] == [100, 50, 30, 10, 0]
    best = min(v["whole_recording_wer"] for v in dev_runs.values())
    assert dev_runs[tuning["chosen"]]["whole_recording_wer"] == best
    ends = [v["segmenter"]["speech_pad_end_ms"] for v in dev_runs.values()]
    assert ends[:5] == [None] * 5
    assert ends[5] in (100, 200)  # the first end padding past the best lead

    (test,) = tuning["test"].values()
    assert list(test["runs"]) == [
        f"chosen: {tuning['chosen']}",
        "fixed",
        "vad",
        "vad-short",
    ]
    chosen = test["runs"][f"chosen: {tuning['chosen']}"]
    assert chosen["segmenter"] == dev_runs[tuning["chosen"]]["segmenter"]
    assert chosen["per_utterance_wer_ci"]["n"] == test["num_utterances"]
    assert tuning["dev"]["path"].endswith("tuning_dev_0.25min.wav")
    assert tuning["dev"]["seconds"] >= 15
    for values in [*dev_runs.values(), *test["runs"].values()]:
        assert values["difference"]["value"] == pytest.approx(
            values["resegmented_wer"] - values["per_utterance_wer"]
        )
    assert "Chosen on dev" in (out / "tuning.md").read_text()
    assert tuning["command"].endswith("--minutes 0.25")
