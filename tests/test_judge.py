"""The LLM judge: strict verdicts, the pinned prompt, text-only chat prompts, and
the on-disk cache (a rerun makes zero judge calls)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM

from speechmapper_plugin.evaluation import render_summary, score_texts
from speechmapper_plugin.evaluation.judge import (
    PROMPT_TOO_LONG,
    JudgeItem,
    LLMJudge,
)
from speechmapper_plugin.evaluation.judge_prompt import (
    ACCURACY_JUDGE_PROMPT_FILE,
    SCORE_JUDGE_PROMPT_FILE,
    JudgePrompt,
    JudgePromptError,
    parse_correct,
    parse_verdict,
)
from speechmapper_plugin.llm import (
    CHATML_TEMPLATE,
    LLAMA3_TEMPLATE,
    encode_text_prompt,
    stop_token_ids,
)
from speechmapper_plugin.llm.tokens import create_text_decoder
from tests.support.cards import SessionCards
from tests.support.generation import reference_greedy
from tests.support.scripted_judge import SHORT_PROMPTS, scripted_judge

ITEMS = [
    JudgeItem("Who saw the bird?", "The old dog.", "the old dog"),
    JudgeItem("Where was the bird?", "Near the river.", "by the house {reference}"),
    JudgeItem("Who saw the bird?", "The old dog.", ""),
    JudgeItem("Who saw the bird?", "The old dog.", "the old dog"),  # a duplicate
    JudgeItem("What colour?", "Red.", "It was red, I think."),
]


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Rating: 0", 0),
        ("Rating: 5", 5),
        ("  Rating: 3\n", 3),
        ("Rating: 6", None),
        ("Rating: 10", None),
        ("Rating: 03", None),
        ("Rating: -1", None),
        ("Rating: 4.", None),
        ("Rating: 4.5", None),
        ("rating: 4", None),
        ("Rating:4", None),
        ("Rating: four", None),
        ("Explanation: close.\nRating: 4", None),
        ("Rating: 4\nRating: 2", None),
        ("I would say 4", None),
        ("", None),
    ],
)
def test_verdicts_are_parsed_strictly(text: str, score: int | None) -> None:
    assert parse_verdict(text) == score


@pytest.mark.parametrize(
    ("text", "correct"),
    [
        ("Correct: yes", True),
        ("Correct: no", False),
        ("  Correct: no\n", False),
        ("Correct: Yes", None),
        ("Correct: yes.", None),
        ("correct: yes", None),
        ("Correct:yes", None),
        ("yes", None),
        ("Correct: yes\nCorrect: no", None),
        ("Rating: 5", None),
        ("", None),
    ],
)
def test_accuracy_verdicts_are_parsed_strictly(text: str, correct: bool | None) -> None:
    assert parse_correct(text) is correct


def test_each_mode_ships_its_prompt() -> None:
    assert JudgePrompt.from_file().source == str(ACCURACY_JUDGE_PROMPT_FILE)
    accuracy = JudgePrompt.from_file(mode="accuracy")
    assert "Correct: yes" in accuracy.text and "Correct: no" in accuracy.text
    score = JudgePrompt.from_file(mode="score")
    assert score.source == str(SCORE_JUDGE_PROMPT_FILE)
    assert "Rating: N" in score.text


def test_a_prompt_for_the_other_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JudgePromptError, match="never asks for the `Correct:` line"):
        JudgePrompt.from_file(SCORE_JUDGE_PROMPT_FILE, mode="accuracy")
    with pytest.raises(JudgePromptError, match="never asks for the `Rating:` line"):
        JudgePrompt.from_file(ACCURACY_JUDGE_PROMPT_FILE, mode="score")
    with pytest.raises(JudgePromptError, match="mode must be one of accuracy, score"):
        JudgePrompt.from_file(mode="binary")  # type: ignore[arg-type]


def test_shipped_prompt_is_valid_and_fills_in_one_pass() -> None:
    prompt = JudgePrompt.from_file(mode="score")

    filled = prompt.fill("Q {hypothesis}?", "R {question}", "H {reference}")
    # Braces inside the item's own text stay literal.
    assert "Q {hypothesis}?" in filled
    assert "R {question}" in filled
    assert "H {reference}" in filled
    assert filled.count("{") == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{question} {reference}", "{hypothesis} 0 times"),
        ("{question} {reference} {hypothesis} {hypothesis}", "{hypothesis} 2 times"),
        ("nothing", "{question} 0 times"),
    ],
)
def test_malformed_prompts_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text(text + "\nRating: N")
    with pytest.raises(JudgePromptError, match=message.replace("{", r"\{")):
        JudgePrompt.from_file(path, mode="score")


def test_missing_prompt_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JudgePromptError, match="Cannot read the judge prompt file"):
        JudgePrompt.from_file(tmp_path / "absent.txt")


def _chat_ids(apply_chat_template: Any, user: str, system: str | None) -> list[int]:
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": user})
    ids = apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict):
        ids = ids["input_ids"]
    return list(ids)


@pytest.mark.parametrize("system", [None, "You grade answers."])
def test_text_prompts_equal_the_tokenizers_chat_formatting(
    test_cards: SessionCards, system: str | None
) -> None:
    from transformers import AutoTokenizer

    user = JudgePrompt.from_file(mode="score").fill("Who?", "The dog.", "a dog")

    llama = load_tokenizer(test_cards.llms.llama_card)
    fairseq2_chat = llama.create_raw_encoder().apply_chat_template  # type: ignore[attr-defined]
    assert list(encode_text_prompt(llama, LLAMA3_TEMPLATE, user, system)) == (
        _chat_ids(fairseq2_chat, user, system)
    )

    eurollm = load_tokenizer(test_cards.llms.eurollm_card)
    hf = AutoTokenizer.from_pretrained(test_cards.llms.eurollm_dir)
    assert list(encode_text_prompt(eurollm, CHATML_TEMPLATE, user, system)) == (
        _chat_ids(hf.apply_chat_template, user, system)
    )


SHORT_PROMPT = SHORT_PROMPTS["score"]


def _judge(test_cards: SessionCards, cache: Path, **kwargs: Any) -> LLMJudge:
    if "prompt_file" not in kwargs:
        kwargs["prompt_file"] = cache.parent / "short_prompt.txt"
        kwargs["prompt_file"].write_text(SHORT_PROMPT)
    kwargs.setdefault("mode", "score")
    return LLMJudge.from_card(
        test_cards.llms.llama_card,
        cache_dir=cache,
        device=torch.device("cpu"),
        dtype=torch.float32,
        batch_size=2,
        **kwargs,
    )


def test_a_rerun_makes_zero_judge_calls(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"

    first = _judge(test_cards, cache)
    verdicts = first.judge(ITEMS)

    assert first.num_calls == 4  # the duplicate is judged once
    assert [v.cached for v in verdicts] == [False] * 5
    assert verdicts[3] == verdicts[0]
    for verdict in verdicts:
        assert verdict.score == parse_verdict(verdict.raw)

    second = _judge(test_cards, cache)
    again = second.judge(ITEMS)

    assert second.num_calls == 0
    assert [v.cached for v in again] == [True] * 5
    assert [(v.raw, v.score) for v in again] == [(v.raw, v.score) for v in verdicts]

    # One changed answer: one call; the rest comes from the cache.
    changed = [*ITEMS[:4], JudgeItem("What colour?", "Red.", "Blue.")]
    third = _judge(test_cards, cache)
    third.judge(changed)
    assert third.num_calls == 1


def test_the_prompt_and_the_judge_settings_are_part_of_the_key(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _judge(test_cards, cache).judge(ITEMS[:2])

    prompt = tmp_path / "prompt.txt"
    prompt.write_text(SHORT_PROMPT.replace("Rate", "Grade"))
    other_prompt = _judge(test_cards, cache, prompt_file=prompt)
    other_prompt.judge(ITEMS[:2])
    assert other_prompt.num_calls == 2

    longer = _judge(test_cards, cache, max_new_tokens=8)
    longer.judge(ITEMS[:2])
    assert longer.num_calls == 2


def test_the_judge_reads_the_chat_prompt_and_decodes_greedily(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    """Independent reference: the tokenizer's own chat formatting, then greedy
    decoding by full forward passes (no KV cache)."""
    card = test_cards.llms.llama_card
    judge = _judge(test_cards, tmp_path / "cache", max_new_tokens=12)
    verdicts = judge.judge(ITEMS)

    tokenizer = load_tokenizer(card)
    model = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(model, TransformerLM)
    model.eval()
    chat = tokenizer.create_raw_encoder().apply_chat_template  # type: ignore[attr-defined]
    decode = create_text_decoder(tokenizer)
    stop_ids = stop_token_ids(tokenizer, LLAMA3_TEMPLATE)

    prompt = JudgePrompt.from_text(SHORT_PROMPT, mode="score")
    for item, verdict in zip(ITEMS, verdicts, strict=True):
        user = prompt.fill(item.question, item.reference, item.hypothesis)
        ids = torch.tensor(_chat_ids(chat, user, None))
        with torch.inference_mode():
            embeds = model.decoder_frontend.embed(ids)
        tokens, _, _ = reference_greedy(
            model, embeds, stop_token_ids=stop_ids, max_new_tokens=12
        )
        expected = decode(torch.tensor(tokens)) if tokens else ""
        assert verdict.raw == expected


def test_a_prompt_longer_than_the_context_is_skipped_not_cached(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    judge = _judge(test_cards, tmp_path / "cache")
    huge = JudgeItem("Who?", "The dog.", "dog " * 5000)

    verdicts = judge.judge([huge, ITEMS[0]])

    assert verdicts[0].skip_reason == PROMPT_TOO_LONG
    assert verdicts[0].score is None
    assert judge.num_calls == 1
    assert judge.cache.get(judge.key(huge)) is None


def test_bad_settings_are_refused(test_cards: SessionCards, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`batch_size` must be positive"):
        LLMJudge.from_card(test_cards.llms.llama_card, cache_dir=tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="No asset card|not|unknown|Unknown"):
        LLMJudge.from_card("no_such_judge_card", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("reply", "score"), [("Rating: 3", 3.0), ("Rating: 5", 5.0), ("Rating 4", None)]
)
def test_a_verdict_line_from_the_llm_becomes_its_score(
    test_cards: SessionCards, tmp_path: Path, reply: str, score: float | None
) -> None:
    judge = scripted_judge(test_cards, reply, tmp_path / "cache")

    verdicts = judge.judge(ITEMS[:2])

    assert [v.raw for v in verdicts] == [reply, reply]
    assert [v.score for v in verdicts] == [score, score]
    assert [v.correct for v in verdicts] == [None, None]


@pytest.mark.parametrize(
    ("reply", "correct"),
    [("Correct: yes", True), ("Correct: no", False), ("Correct: Yes", None)],
)
def test_an_accuracy_verdict_from_the_llm_becomes_correct_or_not(
    test_cards: SessionCards, tmp_path: Path, reply: str, correct: bool | None
) -> None:
    judge = scripted_judge(test_cards, reply, tmp_path / "cache", mode="accuracy")

    verdicts = judge.judge(ITEMS[:2])

    assert [v.raw for v in verdicts] == [reply, reply]
    assert [v.correct for v in verdicts] == [correct, correct]
    assert [v.score for v in verdicts] == [None, None]


def test_judge_accuracy_and_its_wilson_interval_equal_hand_computed_values(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    """Six free-form answers with known verdicts: three cached ``Correct:
    yes``, one cached unparseable, two that the scripted LLM judges ``Correct:
    no``; plus a multiple-choice answer, scored by the choice rule and never
    judged. 3 correct of 5 valid verdicts: 60 %, Wilson 95 % [23.07, 88.24]
    (z = 1.96: centre (0.6 + z²/10) / (1 + z²/5) = 0.5566, half-width
    z·sqrt(0.6·0.4/5 + z²/100) / (1 + z²/5) = 0.3258)."""
    judge = scripted_judge(test_cards, "Correct: no", tmp_path / "c", mode="accuracy")
    cached = {
        "Who saw the bird?": "Correct: yes",
        "What colour was it?": "Correct: yes",
        "Where was it?": " Correct: yes\n",
        "When did it fly?": "Correct: probably",
    }
    questions = [*cached, "Why did it sing?", "How many were there?", "Which one?"]
    for question, raw in cached.items():
        key = judge.key(JudgeItem(question, f"ref {question}", f"hyp {question}"))
        judge.cache.put(key, raw, judge.identity)

    result = score_texts(
        "sqa",
        [f"hyp {q}" for q in questions[:-1]] + ["B"],
        [f"ref {q}" for q in questions[:-1]] + ["B"],
        questions=questions,
        instructions=[f"<speech>\n{q}" for q in questions],
        options=[None] * 6 + [["red", "blue"]],
        judge=judge,
    )

    judged = result["metrics"]["sqa"]["judge"]
    assert judged["mode"] == "accuracy"
    assert (judged["num_examples"], judged["num_multiple_choice"]) == (6, 1)
    assert (judged["num_scored"], judged["num_unparsed"], judged["num_correct"]) == (
        5,
        1,
        3,
    )
    assert (judged["num_calls"], judged["num_cached"]) == (2, 4)
    accuracy = judged["accuracy"]
    assert accuracy["n"] == 5 and accuracy["value"] == pytest.approx(60.0)
    assert accuracy["low"] == pytest.approx(23.07, abs=0.01)
    assert accuracy["high"] == pytest.approx(88.24, abs=0.01)
    assert result["metrics"]["sqa"]["choice"]["accuracy"] == 100.0

    rows = result["scores"]
    assert [r.get("judge_correct") for r in rows] == [
        True,
        True,
        True,
        None,
        False,
        False,
        None,
    ]
    assert "judge_raw" not in rows[-1]  # the multiple-choice answer
    assert "judge accuracy 60.00 % [23.07, 88.24] (n=5)" in render_summary(
        {"metrics": result["metrics"]}
    )


def test_judge_enabled_without_a_card_is_refused() -> None:
    from fairseq2.utils.validation import StandardObjectValidator, ValidationError

    from speechmapper_plugin.evaluation import JudgeSection

    with pytest.raises(
        ValidationError, match=r"`judge\.enabled=true` needs `judge\.card`"
    ):
        StandardObjectValidator().validate(JudgeSection(enabled=True))
    StandardObjectValidator().validate(JudgeSection(enabled=True, card="a_judge"))
    StandardObjectValidator().validate(JudgeSection())  # off: no card needed


def _scorer(tmp_path: Path, card: str | None, evaluated: str, **judge: Any) -> Any:
    from recipes.evaluate.task import EvaluationScorer
    from speechmapper_plugin.evaluation import JudgeSection, ScoringSection

    prompt = tmp_path / "accuracy_prompt.txt"
    prompt.write_text(SHORT_PROMPTS["accuracy"])
    return EvaluationScorer(
        scoring=ScoringSection(),
        judge=JudgeSection(
            enabled=True, card=card, prompt_file=prompt, dtype="float32", **judge
        ),
        evaluated_llm=evaluated,
        output_dir=tmp_path,
        device=torch.device("cpu"),
    )


def test_the_evaluate_judge_is_loaded_by_its_own_card(
    test_cards: SessionCards, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Judging test_llama's answers with test_eurollm loads test_eurollm (its
    card and checkpoint name the judge), not the evaluated LLM; naming the
    evaluated LLM is self-judging, allowed with a warning; no card at all is
    refused rather than falling back on the evaluated LLM."""
    import logging

    llama, eurollm = test_cards.llms.llama_card, test_cards.llms.eurollm_card

    scorer = _scorer(tmp_path, eurollm, evaluated=llama)
    with caplog.at_level(logging.INFO, logger="fairseq2"):
        judge = scorer._load_judge()
    assert json.loads(json.loads(judge.identity)["judge"])["card"] == eurollm
    assert judge.template.name == "chatml" and judge.mode == "accuracy"
    described = scorer._describe_judge(judge)
    assert (described["card"], described["self_judging"]) == (eurollm, False)
    assert not [r for r in caplog.records if "self-judging" in r.getMessage()]

    own = _scorer(tmp_path, llama, evaluated=llama, mode="accuracy")
    with caplog.at_level(logging.INFO, logger="fairseq2"):
        judge = own._load_judge()
    assert json.loads(json.loads(judge.identity)["judge"])["card"] == llama
    assert own._describe_judge(judge)["self_judging"] is True
    warnings = [r for r in caplog.records if "self-judging" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

    with pytest.raises(ValueError, match=r"needs `judge\.card`"):
        _scorer(tmp_path, None, evaluated=llama)._load_judge()
