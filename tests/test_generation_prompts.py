"""Generation from prompts assembled by ``speech_llm.assemble_inputs``.

This is the inference path: chat-template prefix and suffix around the speech
embeddings, right-padded by the stage-2 prompt assembly, decoded here.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from speechmapper_plugin.generation import (
    GenerationConfig,
    generate_from_embeddings,
)
from speechmapper_plugin.llm import assemble_inputs, embed_token_ids
from tests.support.generation import random_prompts, scripted_llama, tiny_llama


def test_embed_token_ids_is_the_frontend() -> None:
    model = tiny_llama()
    ids = torch.tensor([[3, 1, 4], [1, 5, 9]])

    embeds = embed_token_ids(model, ids)

    assert torch.equal(embeds, model.decoder_frontend.embed(ids))
    assert torch.equal(embed_token_ids(model, ids[1]), embeds[1])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_assembled_speech_prompts_generate_the_answer(beam_size: int) -> None:
    # The suffix ends with <start>; the scripted LLM answers a b c <eot>.
    start, a, b, c, eot = 9, 1, 2, 3, 15
    model = scripted_llama({start: a, a: b, b: c, c: eot})
    speech_lens = [4, 7, 2]
    speech = random_prompts(speech_lens, model.model_dim, seed=32)

    inputs = assemble_inputs(
        partial(embed_token_ids, model),
        prefix_ids=[[5, 6], [5], [5, 6, 7]],
        speech=speech,
        speech_lens=speech_lens,
        suffix_ids=[[7, start]] * 3,
    )
    results = generate_from_embeddings(
        model,
        inputs.embeds,
        inputs.layout,
        stop_token_ids=[eot],
        config=GenerationConfig(beam_size=beam_size),
        num_speech_positions=speech_lens,
    )

    assert [r.prompt_len for r in results] == [8, 10, 7]
    for result in results:
        assert result.tokens == [a, b, c]
        assert result.stop_reason == "eos"
    # Default budget: min(256, 1.0 * speech positions + 32).
    assert [r.max_new_tokens for r in results] == [36, 39, 34]
