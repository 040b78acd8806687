"""A whole EuroParl-ST session end to end: the converter's ``--whole-session``
mode -> ``recipes.evaluate`` with long-form on (Silero VAD segments) -> the
translation re-segmented onto the session's reference segments and scored.

The session is espeak speech of eleven sentences (about 45 s, longer than the
tiny projector's 32.8 s), so without ``long_form.enabled`` it is skipped.
The tiny random LLM's translations are gibberish: what is checked is the
plumbing (a record per session with its timed segments, one scored pair per
reference segment) and the scores, against sacreBLEU on the pieces that
:func:`resegment` cuts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.data.convert.__main__ import main as convert_main
from speechmapper_plugin.data.convert.europarl_st import read_segments, segments_path
from speechmapper_plugin.evaluation.resegment import resegment
from tests.support.audio import has_espeak, synthesize_speech, write_wav
from tests.support.cards import SessionCards
from tests.support.llm import training_sentences
from tests.support.recipes import REPO, run_recipe

pytestmark = [
    pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox"),
    pytest.mark.slow,
]

SPEECH = "en.20080924.31.3-260"
RATE = 16_000


def write_session(root: Path) -> tuple[Path, list[str], list[str]]:
    """``v1.1/en/audios/SPEECH.wav`` (the sentences with 1 s pauses) and
    ``v1.1/en/de/test/segments.{lst,en,de}``; returns the corpus root, the
    sentences and their "translations"."""
    sentences = training_sentences(400)[100:111]
    translations = [f"Satz {i} der Sitzung wird hier übersetzt." for i in range(11)]
    base = root / "v1.1" / "en"
    parts: list[np.ndarray] = [np.zeros(RATE // 2, np.float32)]
    lines: list[str] = []
    position = RATE // 2
    for i, sentence in enumerate(sentences):
        wav = synthesize_speech(root / "tts" / f"{i}.wav", sentence, speed=130)
        speech = load_audio(wav).numpy()
        lines.append(
            f"{SPEECH} {position / RATE:.2f} {(position + speech.size) / RATE:.2f}"
        )
        parts += [speech, np.zeros(RATE, np.float32)]
        position += speech.size + RATE
    write_wav(base / "audios" / f"{SPEECH}.wav", np.concatenate(parts))
    split = base / "de" / "test"
    split.mkdir(parents=True)
    (split / "segments.lst").write_text("".join(f"{line}\n" for line in lines))
    (split / "segments.en").write_text("".join(f"{s}\n" for s in sentences))
    (split / "segments.de").write_text(
        "".join(f"{t}\n" for t in translations), encoding="utf-8"
    )
    return root / "v1.1", sentences, translations


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_a_whole_session_is_translated_long_form_and_scored_on_its_segments(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    root, sentences, translations = write_session(tmp_path / "europarl")
    instructions = tmp_path / "ep_st.jsonl"
    assert (
        convert_main(
            [
                "europarl_st",
                str(root),
                "--src",
                "en",
                "--tgt",
                "de",
                "--split",
                "test",
                "--whole-session",
                "--out-instructions",
                str(instructions),
            ]
        )
        == 0
    )
    (session,) = read_segments(segments_path(instructions))
    assert len(session["segments"]) == 11
    assert load_audio(session["audio"]).numel() > 40 * RATE

    out = tmp_path / "eval"
    run_recipe(
        "evaluate",
        out,
        "--config-file",
        str(REPO / "recipes/evaluate/configs/tiny.yaml"),
        "--config",
        "model.name=test_projector_llama",
        "sfm.name=test_sm4t_hf",
        "llm.name=test_llama",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
        f"input.instructions={instructions}",
        "long_form.enabled=true",
        "long_form.segmenter.kind=vad",
        "long_form.segmenter.max_seconds=15.0",
        "scoring.comet=false",
    )

    (record,) = read_jsonl(out / "hypotheses.jsonl")
    assert record["task"] == "st"
    # VAD segments: in order, each within the 15 s maximum, covering speech.
    times = [(s["start"], s["end"]) for s in record["segments"]]
    assert len(times) >= 3
    assert all(0 < end - start <= 15.0 for start, end in times)
    assert all(a[1] <= b[0] for a, b in zip(times, times[1:], strict=False))
    assert record["hypothesis"] == " ".join(
        s["text"] for s in record["segments"] if s["text"]
    )

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_generated"] == 1
    values = summary["metrics"]["st/de"]
    assert values["num_sessions"] == 1
    # One scored pair per reference segment, cut by minimum edit distance.
    pieces = resegment(record["hypothesis"], translations).segments
    (row,) = read_jsonl(out / "scores.jsonl")
    assert [s["hypothesis"] for s in row["segments"]] == pieces
    bleu = BLEU(tokenize="13a").corpus_score(pieces, [translations])
    assert values["bleu"] == pytest.approx(bleu.score)
    chrf = CHRF().corpus_score(pieces, [translations])
    assert values["chrf"] == pytest.approx(chrf.score)
    assert chrf.score > 0
