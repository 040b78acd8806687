"""The LLM judge: strict verdicts, the pinned prompt, text-only chat prompts, and
the on-disk cache (a rerun makes zero judge calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM

from speechmapper_plugin.evaluation.judge import (
    PROMPT_TOO_LONG,
    JudgeItem,
    LLMJudge,
)
from speechmapper_plugin.evaluation.judge_prompt import (
    DEFAULT_JUDGE_PROMPT_FILE,
    JudgePrompt,
    JudgePromptError,
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


def test_shipped_prompt_is_valid_and_fills_in_one_pass() -> None:
    prompt = JudgePrompt.from_file()
    assert prompt.source == str(DEFAULT_JUDGE_PROMPT_FILE)
    assert "Rating: N" in prompt.text

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
    path.write_text(text)
    with pytest.raises(JudgePromptError, match=message.replace("{", r"\{")):
        JudgePrompt.from_file(path)


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

    user = JudgePrompt.from_file().fill("Who?", "The dog.", "a dog")

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


SHORT_PROMPT = (
    "Question: {question}\nReference: {reference}\nAnswer: {hypothesis}\n"
    "Rate the answer from 0 to 5. Reply with one line: Rating: N"
)
"""The tiny LLM's context (256 positions) is too short for the shipped prompt
(about 700 of its tokens), so the judge tests use this one."""


def _judge(test_cards: SessionCards, cache: Path, **kwargs: Any) -> LLMJudge:
    if "prompt_file" not in kwargs:
        kwargs["prompt_file"] = cache.parent / "short_prompt.txt"
        kwargs["prompt_file"].write_text(SHORT_PROMPT)
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

    prompt = JudgePrompt.from_text(SHORT_PROMPT)
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


def _scripted_judge(test_cards: SessionCards, reply: str, cache: Path) -> LLMJudge:
    """The tiny LLM rewired so that, after the assistant header, it writes
    ``reply`` and ends its turn whatever the prompt: the decoder layers add
    nothing (zero output projections), so the next token depends only on the
    last one, and the final projection maps each token of the chain to its
    successor."""
    from fairseq2.nn import BatchLayout

    card = test_cards.llms.llama_card
    tokenizer = load_tokenizer(card)
    model = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
    assert isinstance(model, TransformerLM)
    model.eval()

    header = encode_text_prompt(tokenizer, LLAMA3_TEMPLATE, "x")
    reply_ids = tokenizer.create_raw_encoder()(reply).tolist()
    chain = [header[-1], *reply_ids, stop_token_ids(tokenizer, LLAMA3_TEMPLATE)[0]]
    assert len(set(chain[:-1])) == len(chain) - 1, "a token repeats in the chain"

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("output_proj.weight"):
                param.zero_()
        weight = model.final_proj.weight
        weight.zero_()
        for token, successor in zip(chain[:-1], chain[1:], strict=True):
            embed = model.decoder_frontend.embed.weight[token].view(1, 1, -1)
            hidden = model.decoder(embed, BatchLayout.of(embed))[0, 0]
            weight[successor] += 50.0 * hidden / hidden.norm() ** 2

    prompt = JudgePrompt.from_text(SHORT_PROMPT)
    return LLMJudge(
        model,
        tokenizer,
        LLAMA3_TEMPLATE,
        identity=f"scripted: {reply}",
        cache_dir=cache,
        prompt=prompt,
    )


@pytest.mark.parametrize(
    ("reply", "score"), [("Rating: 3", 3.0), ("Rating: 5", 5.0), ("Rating 4", None)]
)
def test_a_verdict_line_from_the_llm_becomes_its_score(
    test_cards: SessionCards, tmp_path: Path, reply: str, score: float | None
) -> None:
    judge = _scripted_judge(test_cards, reply, tmp_path / "cache")

    verdicts = judge.judge(ITEMS[:2])

    assert [v.raw for v in verdicts] == [reply, reply]
    assert [v.score for v in verdicts] == [score, score]
