"""What the quickstart evaluates besides the speech models: the test
instructions, the shuffled-speech control, the two text references (the
no-translation baseline and the text upper bound) and the toy LLM's EET.

Everything is scored with the evaluation recipe's own scorer
(:func:`speechmapper_plugin.evaluation.scoring.score_texts`), so the rows of
the final table are comparable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.data.instructions.example import (
    InstructionExample,
    write_instructions,
)
from speechmapper_plugin.quickstart.layout import QuickstartLayout
from speechmapper_plugin.quickstart.world import utterance_id
from speechmapper_plugin.speech_llm.task_prompts import TaskPrompts
from speechmapper_plugin.tiny_assets.toy_world import ParallelSentence

TARGET_LANGS: Final = ("fr", "de")

TEST_INSTRUCTIONS: Final = "test"
SHUFFLED_INSTRUCTIONS: Final = "test_shuffled_asr"

TEXT_PAD_RATIO: Final = 1.0
"""Pads after the gold transcript in the text upper bound, per token (the
toy LLM was trained on 0 to 2)."""


def _audio(layout: QuickstartLayout, index: int) -> str:
    """Relative to the instruction files (read against their folder), so a
    copied run still finds its audio."""
    audio = layout.corpus / "audio" / f"{utterance_id('test', index)}.wav"
    return os.path.relpath(audio, layout.instructions(TEST_INSTRUCTIONS).parent)


def write_test_instructions(
    layout: QuickstartLayout, test: Sequence[ParallelSentence]
) -> None:
    """The test split as instructions with audio paths: transcription and
    translation to each target language (fixed inference prompts, the
    transcript kept for reference), and the shuffled-speech ASR control (each
    sentence's reference with the next utterance's audio)."""
    prompts = TaskPrompts()
    examples: list[InstructionExample] = []
    for i, s in enumerate(test):
        uid = utterance_id("test", i)
        examples.append(
            InstructionExample(
                id=f"{uid}_asr",
                instruction=prompts.transcription(),
                response=s.en,
                audio=_audio(layout, i),
                task="asr",
                lang="en",
                transcript=s.en,
            )
        )
        for lang in TARGET_LANGS:
            examples.append(
                InstructionExample(
                    id=f"{uid}_st_{lang}",
                    instruction=prompts.translation(lang),
                    response=s.text(lang),
                    audio=_audio(layout, i),
                    task="st",
                    lang="en",
                    target_lang=lang,
                    transcript=s.en,
                )
            )
    write_instructions(layout.instructions(TEST_INSTRUCTIONS), examples)

    shuffled = [
        InstructionExample(
            id=f"{utterance_id('test', i)}_asr_shuffled",
            instruction=prompts.transcription(),
            response=s.en,
            audio=_audio(layout, (i + 1) % len(test)),
            task="asr",
            lang="en",
        )
        for i, s in enumerate(test)
    ]
    write_instructions(layout.instructions(SHUFFLED_INSTRUCTIONS), shuffled)


def score_references(
    layout: QuickstartLayout,
    test: Sequence[ParallelSentence],
    llm_card: dict[str, object],
) -> dict[str, Any]:
    """Score the no-translation baseline and the text upper bound on the test
    sentences; written to ``layout.references``."""
    from speechmapper_plugin.evaluation.scoring import score_texts
    from speechmapper_plugin.tiny_assets.text_llm import ToyLLMSession

    session = ToyLLMSession.load(llm_card)
    prompts = TaskPrompts()
    english = [s.en for s in test]
    pads = [round(TEXT_PAD_RATIO * len(session.encode(e))) for e in english]

    def st(hyps: Sequence[str], lang: str) -> dict[str, Any] | None:
        refs = [s.text(lang) for s in test]
        scored = score_texts("st", hyps, refs, target_langs=[lang] * len(refs))
        return st_entry(scored["metrics"], lang)

    baseline = {lang: st(english, lang) for lang in TARGET_LANGS}

    upper: dict[str, Any] = {}
    transcripts = session.generate_text(
        [prompts.transcription()] * len(test), english, pads
    )
    upper["asr"] = asr_entry(score_texts("asr", transcripts, english)["metrics"])
    for lang in TARGET_LANGS:
        hyps = session.generate_text(
            [prompts.translation(lang)] * len(test), english, pads
        )
        upper[lang] = st(hyps, lang)

    data = {"baseline_no_translation": baseline, "text_upper_bound": upper}
    layout.references.write_text(json.dumps(data, indent=2) + "\n")
    return data


def asr_entry(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The table's ASR cell of a scorer's metrics: WER (normalised), its
    interval and n; ``None`` without an ``asr`` group."""
    group = metrics.get("asr")
    if group is None:
        return None
    return {
        "wer": group["wer"],
        "wer_ci": group.get("wer_ci"),
        "n": group["num_examples"],
    }


def st_entry(metrics: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """The table's cells of one target language: BLEU, chrF and adherence
    (%), each with its 95 % interval, and n; ``None`` without that group."""
    group = metrics.get(f"st/{lang}")
    if group is None:
        return None
    failures = metrics.get("failures/st", {})
    by_language = failures.get("language_adherence", {}).get("rate_ci_by_language", {})
    return {
        "bleu": group["bleu"],
        "chrf": group["chrf"],
        "adherence": adherence_of(failures, lang),
        "bleu_ci": group.get("bleu_ci"),
        "chrf_ci": group.get("chrf_ci"),
        "adherence_ci": by_language.get(lang),
        "n": group["num_examples"],
    }


def adherence_of(failures: dict[str, Any], lang: str) -> float | None:
    """The share (%) of outputs asked in ``lang`` that came out in ``lang``,
    from the scorer's language confusion counts."""
    confusion = failures.get("language_adherence", {}).get("confusion", {})
    row = confusion.get(lang)
    if not row:
        return None
    return 100.0 * row.get(lang, 0) / sum(row.values())


def run_toy_llm_eet(
    layout: QuickstartLayout,
    sentences: Sequence[str],
    llm_card: dict[str, object],
    marker_mse: float | None,
) -> float | None:
    """The toy LLM's EET (noise on the test transcripts' embeddings), written
    with stage 1's held-out MSE marked; returns the threshold MSE."""
    from speechmapper_plugin.evaluation.eet import EETConfig, run_eet
    from speechmapper_plugin.evaluation.eet_report import write_eet
    from speechmapper_plugin.tiny_assets.text_llm import ToyLLMSession

    session = ToyLLMSession.load(llm_card)
    result = run_eet(
        session.model,
        session.tokenizer,
        session.template,
        sentences,
        EETConfig(),
        llm_name=session.card.name,
    )
    write_eet(result, layout.eet, marker_mse=marker_mse)
    return result.threshold_mse


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object.")
    return data
