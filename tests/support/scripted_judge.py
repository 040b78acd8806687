"""A judge LLM whose every verdict is known in advance: the tiny test LLM
rewired to write one fixed reply, so tests of judge scoring compare with
hand-computed values instead of whatever a random tiny LLM happens to say."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout

from speechmapper_plugin.evaluation.judge import LLMJudge
from speechmapper_plugin.evaluation.judge_prompt import JudgeMode, JudgePrompt
from speechmapper_plugin.llm import LLAMA3_TEMPLATE, encode_text_prompt, stop_token_ids
from tests.support.cards import SessionCards

SHORT_PROMPTS: Final[dict[str, str]] = {
    "score": (
        "Question: {question}\nReference: {reference}\nAnswer: {hypothesis}\n"
        "Rate the answer from 0 to 5. Reply with one line: Rating: N"
    ),
    "accuracy": (
        "Question: {question}\nReference: {reference}\nAnswer: {hypothesis}\n"
        "Is the answer correct? Reply with one line: Correct: yes or Correct: no"
    ),
}
"""Per mode, a prompt that fits the tiny LLM's 256-position context (the
shipped prompts take about 700 of its tokens)."""


def scripted_judge(
    cards: SessionCards, reply: str, cache: Path, *, mode: JudgeMode = "score"
) -> LLMJudge:
    """The tiny LLM rewired so that, after the assistant header, it writes
    ``reply`` and ends its turn whatever the prompt: the decoder layers add
    nothing (zero output projections), so the next token depends only on the
    last one, and the final projection maps each token of the chain to its
    successor."""
    card = cards.llms.llama_card
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

    return LLMJudge(
        model,
        tokenizer,
        LLAMA3_TEMPLATE,
        identity=f"scripted: {reply}",
        cache_dir=cache,
        mode=mode,
        prompt=JudgePrompt.from_text(SHORT_PROMPTS[mode], mode=mode),
    )
