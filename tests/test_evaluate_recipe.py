"""The evaluate recipe end to end: espeak speech -> hypotheses, scores, summaries.

Runs ``python -m recipes.evaluate`` as users do, with the session's tiny
SeamlessM4T-v2 encoder, a tiny projector and the tiny random-weight LLM
(the hypotheses are gibberish: what is checked is that every file is
written and that the scores are what jiwer/sacreBLEU give on the very
hypotheses written). Interrupting a run with SIGKILL and rerunning generates
only the missing examples, and ends with the uninterrupted run's files.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jiwer
import pytest
import sacrebleu
from whisper_normalizer.english import EnglishTextNormalizer

from speechmapper_plugin.data.instructions import InstructionExample, write_instructions
from speechmapper_plugin.evaluation import exact_match, token_f1
from tests.support.audio import has_espeak, synthesize_corpus
from tests.support.cards import SessionCards
from tests.support.llm import training_sentences
from tests.support.recipes import REPO, recipe_command, recipe_env, run_recipe
from tests.support.scripted_judge import SHORT_PROMPTS

pytestmark = [
    pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox"),
    pytest.mark.slow,
]

TINY = str(REPO / "recipes/evaluate/configs/tiny.yaml")

NUM_GOOD = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight spoken sentences plus a row whose audio is missing."""
    root = tmp_path_factory.mktemp("evaluate_corpus")
    manifest = synthesize_corpus(
        root, training_sentences(400)[80 : 80 + NUM_GOOD], speed=130
    )
    with manifest.open("a", encoding="utf-8") as fp:
        fp.write("missing\taudio/missing.wav\t16000\tA dog.\ten\n")
    return manifest


def evaluate_args(cards: SessionCards, *overrides: str) -> list[str]:
    return [
        "--config-file",
        TINY,
        "--config",
        "model.name=test_projector_llama",
        "sfm.name=test_sm4t_hf",
        "llm.name=test_llama",
        f"common.assets.extra_paths=[{cards.card_dir}]",
        *overrides,
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def without_run_specific(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary less what names the output directory."""
    return {k: v for k, v in summary.items() if k not in ("judge",)}


@pytest.fixture(scope="module")
def asr_run(
    corpus: Path, test_cards: SessionCards, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("asr_run") / "out"
    run_recipe(
        "evaluate",
        out,
        *evaluate_args(test_cards, f"input.manifest={corpus}", "prompt.task=asr"),
    )
    return out


def test_asr_files_and_scores_equal_jiwer_on_the_written_hypotheses(
    asr_run: Path,
) -> None:
    out = asr_run
    for name in (
        "hypotheses.jsonl",
        "scores.jsonl",
        "skipped.tsv",
        "summary.json",
        "summary.md",
    ):
        assert (out / name).is_file(), name
    assert not (out / "hypotheses.parts").exists()

    records = read_jsonl(out / "hypotheses.jsonl")
    scores = read_jsonl(out / "scores.jsonl")
    assert len(records) == NUM_GOOD
    assert [s["id"] for s in scores] == [r["id"] for r in records]

    refs = [r["reference"] for r in records]
    hyps = [r["hypothesis"] for r in records]
    english = EnglishTextNormalizer()
    norm_refs = [" ".join(english(t).split()) for t in refs]
    norm_hyps = [" ".join(english(t).split()) for t in hyps]

    summary = json.loads((out / "summary.json").read_text())
    asr = summary["metrics"]["asr"]
    assert asr["num_examples"] == NUM_GOOD
    assert asr["wer_raw"] == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert asr["cer_raw"] == pytest.approx(100 * jiwer.cer(refs, hyps))
    assert asr["wer"] == pytest.approx(100 * jiwer.wer(norm_refs, norm_hyps))
    assert asr["cer"] == pytest.approx(100 * jiwer.cer(norm_refs, norm_hyps))
    assert [s["normalized_hypothesis"] for s in scores] == norm_hyps

    failures = summary["metrics"]["failures"]
    stops = [r["stop_reason"] for r in records]
    assert failures["repetition_stop_rate"] == pytest.approx(
        100 * stops.count("repetition") / NUM_GOOD
    )
    assert failures["max_length_rate"] == pytest.approx(
        100 * stops.count("max_length") / NUM_GOOD
    )
    assert failures["empty_rate"] == pytest.approx(
        100 * sum(not h.strip() for h in hyps) / NUM_GOOD
    )
    adherence = failures["language_adherence"]
    assert set(adherence["confusion"]) == {"en"}
    assert sum(adherence["confusion"]["en"].values()) == NUM_GOOD
    assert [s["detected_lang"] for s in scores].count("en") == adherence["confusion"][
        "en"
    ].get("en", 0)

    # What produced the numbers.
    assert summary["models"]["llm"]["name"] == "test_llama"
    assert summary["models"]["projector"]["name"] == "test_projector_llama"
    # Every input row got the instruction (the missing file's row too).
    assert summary["prompts"]["instructions"] == {
        records[0]["instruction"]: NUM_GOOD + 1
    }
    assert summary["generation"]["max_new_tokens"] == 32
    assert summary["generation"]["repetition_guard"]["enabled"] is True
    assert "seed" in summary
    assert summary["versions"]["jiwer"] == version("jiwer")
    assert summary["signatures"]["asr"]["normalizers"] == asr["normalizers"]
    assert summary["skipped_by_reason"] == {"missing_file": 1}

    md = (out / "summary.md").read_text()
    assert "| asr | 8 |" in md
    assert "## Failure signatures" in md
    assert "EnglishTextNormalizer" in md


def test_the_generate_summary_means_the_same_wer(asr_run: Path) -> None:
    """``recipes.generate``'s summary of the same hypotheses holds the same
    ``asr`` numbers under the same names: ``wer`` after Whisper's normaliser."""
    from speechmapper_plugin.generation_task.summary import summarize

    records = read_jsonl(asr_run / "hypotheses.jsonl")
    evaluated = json.loads((asr_run / "summary.json").read_text())["metrics"]["asr"]
    generated = summarize(records, [], len(records))["metrics"]["asr"]

    english = EnglishTextNormalizer()
    norm_refs = [" ".join(english(r["reference"]).split()) for r in records]
    norm_hyps = [" ".join(english(r["hypothesis"]).split()) for r in records]
    assert generated["wer"] == pytest.approx(100 * jiwer.wer(norm_refs, norm_hyps))
    assert generated == evaluated


def test_instruction_file_st_sqa_custom(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    rows = [line.split("\t") for line in corpus.read_text().splitlines()[1:4]]
    audio = [str(corpus.parent / row[1]) for row in rows]
    examples = [
        InstructionExample(
            id="st1",
            audio=audio[0],
            instruction="Translate the audio into German.\n<speech>",
            response="Der alte Hund sah einen Vogel.",
            task="st",
            target_lang="de",
            transcript=rows[0][3],
        ),
        InstructionExample(
            id="st2",
            audio=audio[1],
            instruction="Translate the audio into German.\n<speech>",
            response="Die Katze schläft.",
            task="st",
            target_lang="de",
            transcript=rows[1][3],
        ),
        InstructionExample(
            id="mc",
            audio=audio[2],
            instruction="<speech>\nWho saw the bird?",
            response="B",
            task="sqa",
            question="Who saw the bird?",
            options=("the cat", "the old dog"),
        ),
        InstructionExample(
            id="squad",
            audio=audio[0],
            instruction="<speech>\nWhat did the dog see?",
            response="a bird",
            task="sqa",
            answers=("a bird", "a small bird"),
        ),
        InstructionExample(
            id="free",
            audio=audio[1],
            instruction="<speech>\nDescribe the speaker's voice.",
            task="custom",
        ),
    ]
    instructions = tmp_path / "test.jsonl"
    write_instructions(instructions, examples)

    out = tmp_path / "out"
    run_recipe(
        "evaluate",
        out,
        *evaluate_args(test_cards, f"input.instructions={instructions}"),
    )

    records = {r["id"]: r for r in read_jsonl(out / "hypotheses.jsonl")}
    scores = {s["id"]: s for s in read_jsonl(out / "scores.jsonl")}
    assert list(records) == ["st1", "st2", "mc", "squad", "free"]
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    assert set(metrics) == {
        "st/de",
        "sqa",
        "failures",
        "failures/st",
        "failures/sqa",
        "failures/custom",
    }

    hyps = [records["st1"]["hypothesis"], records["st2"]["hypothesis"]]
    refs = [examples[0].response, examples[1].response]
    st = metrics["st/de"]
    assert st["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert st["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in st["bleu_signature"]
    assert (out / "comet/de/src.txt").read_text().splitlines() == [
        rows[0][3],
        rows[1][3],
    ]
    assert (out / "comet/de/hyp.txt").read_text().splitlines() == [
        " ".join(h.split()) for h in hyps
    ]
    assert (out / "comet/de/ref.txt").read_text().splitlines() == refs
    assert st["comet"]["command"].startswith("comet-score -s ")
    assert records["st1"]["transcript"] == rows[0][3]
    assert summary["signatures"]["st/de"]["bleu_signature"] == st["bleu_signature"]

    sqa = metrics["sqa"]
    assert sqa["num_examples"] == 2
    squad = records["squad"]["hypothesis"]
    assert scores["squad"]["exact_match"] == (
        exact_match(squad, "a bird") or exact_match(squad, "a small bird")
    )
    assert scores["squad"]["token_f1"] == pytest.approx(
        max(token_f1(squad, "a bird"), token_f1(squad, "a small bird"))
    )
    assert sqa["choice"]["num_examples"] == 1
    assert scores["mc"]["choice_reference"] == "B"
    assert records["mc"]["options"] == ["the cat", "the old dog"]
    assert metrics["failures/custom"]["num_examples"] == 1
    assert metrics["failures/st"]["language_adherence"]["confusion"].keys() == {"de"}
    assert "judge" not in sqa  # off by default

    md = (out / "summary.md").read_text()
    assert "| st/de | 2 |" in md and "| sqa | 2 |" in md


def _done_ids(out: Path) -> set[str]:
    """The ids of the complete lines of the part files."""
    parts = out / "hypotheses.parts"
    ids = set()
    for line in (parts / "rank_000.jsonl").read_text().split("\n")[:-1]:
        ids.add(json.loads(line)["id"])
    skipped = parts / "skipped_rank_000.tsv"
    if skipped.exists():
        for line in skipped.read_text().split("\n")[1:-1]:
            ids.add(line.split("\t")[1])
    return ids


def _part_lines(out: Path) -> int:
    part = out / "hypotheses.parts/rank_000.jsonl"
    if not part.exists():
        return 0
    return part.read_bytes().count(b"\n")


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(
    corpus: Path, test_cards: SessionCards, asr_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    args = evaluate_args(
        test_cards,
        f"input.manifest={corpus}",
        "prompt.task=asr",
        "batching.max_batch_size=1",
    )
    proc = subprocess.Popen(
        recipe_command("evaluate", out, *args),
        cwd=REPO,
        env=recipe_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while (
            _part_lines(out) == 0
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()

    assert not (out / "summary.json").exists()
    done = _done_ids(out)
    assert 1 <= len(done) < NUM_GOOD + 1

    resumed = run_recipe("evaluate", out, *args)
    log = resumed.stdout + resumed.stderr
    # The row with the missing file is an example too (skipped when read).
    total = NUM_GOOD + 1
    assert f"resuming; {len(done)} of {total} examples are done already" in log
    assert f"Rank 0: {total - len(done)} of {total} examples to generate." in log

    for name in ("hypotheses.jsonl", "scores.jsonl", "skipped.tsv"):
        assert (out / name).read_text() == (asr_run / name).read_text(), name
    summary = json.loads((out / "summary.json").read_text())
    expected = json.loads((asr_run / "summary.json").read_text())
    assert without_run_specific(summary) == without_run_specific(expected)

    # Other generation settings into the same directory are refused.
    refused = run_recipe(
        "evaluate", out, *args, "generation.max_new_tokens=16", check=False
    )
    assert refused.returncode != 0
    assert (
        "holds hypotheses of an earlier run with other settings (they differ in: generation"
        in (refused.stdout + refused.stderr)
    )


@pytest.mark.skipif(
    importlib.util.find_spec("speechmapper_plugin.evaluation.judge") is None,
    reason="the LLM judge module (helper H3) is not there",
)
def test_the_judge_scores_qa_and_a_rerun_calls_it_zero_times(
    corpus: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    row = corpus.read_text().splitlines()[1].split("\t")
    instructions = tmp_path / "qa.jsonl"
    write_instructions(
        instructions,
        [
            InstructionExample(
                id=f"q{i}",
                audio=str(corpus.parent / row[1]),
                instruction=f"<speech>\n{question}",
                response=answer,
                task="sqa",
            )
            for i, (question, answer) in enumerate(
                [
                    ("Who saw the bird?", "The old dog."),
                    ("Where was it?", "In the garden."),
                ]
            )
        ],
    )
    # The tiny LLMs' 256-position context is too short for the shipped prompt.
    prompt = tmp_path / "short_prompt.txt"
    prompt.write_text(SHORT_PROMPTS["accuracy"])
    out = tmp_path / "judged"
    # The judge is its own card (test_eurollm), not the evaluated test_llama.
    args = evaluate_args(
        test_cards,
        f"input.instructions={instructions}",
        "judge.enabled=true",
        "judge.card=test_eurollm",
        "judge.mode=accuracy",
        f"judge.prompt_file={prompt}",
        "judge.dtype=float32",
    )
    run_recipe("evaluate", out, *args)
    summary = json.loads((out / "summary.json").read_text())
    first = summary["metrics"]["sqa"]["judge"]
    assert first["mode"] == "accuracy" and first["num_examples"] == 2
    assert first["num_skipped"] == 0, read_jsonl(out / "scores.jsonl")
    assert first["num_calls"] == 2 and first["num_cached"] == 0, first
    scores = read_jsonl(out / "scores.jsonl")
    assert all("judge_raw" in row and "judge_correct" in row for row in scores)
    assert first["num_scored"] + first["num_unparsed"] == 2
    assert summary["judge"]["card"] == "test_eurollm"
    assert summary["judge"]["self_judging"] is False
    identity = json.loads(summary["judge"]["identity"])
    assert json.loads(identity["judge"])["card"] == "test_eurollm"
    assert identity["template"] == "chatml"  # EuroLLM's, not the evaluated Llama's

    rerun = run_recipe("evaluate", out, *args)
    assert "Rank 0: 0 of 2 examples to generate." in rerun.stdout + rerun.stderr
    second = json.loads((out / "summary.json").read_text())["metrics"]["sqa"]["judge"]
    assert second["num_calls"] == 0 and second["num_cached"] == 2
    assert second["accuracy"] == first["accuracy"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"manifest": "a.tsv", "scoring_task": "sqa"},
            "`scoring.task: sqa` needs an instruction file",
        ),
        (
            {"manifest": "a.tsv", "candidates": ["en", "klingon"]},
            "`scoring.language_candidates`",
        ),
        (
            {"manifest": "a.tsv", "judge_batch": 0},
            "`judge.batch_size` must be positive",
        ),
        (
            {"manifest": "a.tsv", "judge_enabled": True},
            "`judge.enabled=true` needs `judge.card`",
        ),
    ],
)
def test_the_config_is_validated(overrides: dict[str, Any], message: str) -> None:
    from fairseq2.utils.validation import StandardObjectValidator, ValidationError

    from recipes.evaluate.config import EvaluateConfig
    from recipes.generation import InputSection
    from speechmapper_plugin.evaluation import JudgeSection, ScoringSection

    scoring = ScoringSection(task=overrides.get("scoring_task"))
    if "candidates" in overrides:
        scoring.language_candidates = overrides["candidates"]
    config = EvaluateConfig(
        input=InputSection(manifest=Path(overrides["manifest"])),
        scoring=scoring,
        judge=JudgeSection(
            enabled=overrides.get("judge_enabled", False),
            batch_size=overrides.get("judge_batch", 8),
        ),
    )
    with pytest.raises(
        ValidationError, match=message.replace("`", "\\`").replace(".", "\\.")
    ):
        StandardObjectValidator().validate(config)


def test_the_checkpoint_step_is_read_from_the_checkpoint_path() -> None:
    from fairseq2.recipe.config import ReferenceModelSection

    from recipes.generation import describe_model

    described = describe_model(
        ReferenceModelSection(
            path=Path("/runs/stage2/checkpoints/step_600/model"), family="speechmapper"
        ),
        None,
    )
    assert described["checkpoint"] == "/runs/stage2/checkpoints/step_600/model"
    assert described["checkpoint_step"] == 600
    assert (
        describe_model(ReferenceModelSection(name="some_card"), None)["checkpoint_step"]
        is None
    )
