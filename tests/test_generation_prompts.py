"""Splicing speech embeddings into chat prompts, then generating from them."""

from __future__ import annotations

import pytest
import torch

from speechmapper_plugin.generation import (
    GenerationConfig,
    embed_token_ids,
    generate_from_embeddings,
    splice_speech_prompts,
)
from tests.support.generation import random_prompts, scripted_llama, tiny_llama


def test_prompts_are_prefix_speech_suffix_right_padded() -> None:
    model = tiny_llama()
    speech = random_prompts([3, 5], model.model_dim, seed=30)  # NaN padding
    prefix, suffix = [1, 2, 3, 4], [5, 6]

    batch = splice_speech_prompts(model, speech, [3, 5], prefix, suffix)

    assert batch.prompt_lens == [9, 11]
    assert batch.num_speech_positions == [3, 5]
    prefix_embeds = embed_token_ids(model, torch.tensor(prefix))
    suffix_embeds = embed_token_ids(model, torch.tensor(suffix))
    for row, n in enumerate([3, 5]):
        expected = torch.cat([prefix_embeds, speech[row, :n], suffix_embeds])
        assert torch.equal(batch.embeds[row, : 6 + n], expected)
    assert torch.equal(batch.embeds[0, 9:], torch.zeros(2, model.model_dim))


def test_prefixes_and_suffixes_may_differ_per_row() -> None:
    model = tiny_llama()
    speech = random_prompts([2, 2], model.model_dim, seed=31)

    batch = splice_speech_prompts(model, speech, [2, 2], [[1], [1, 2, 3]], [[], [4]])

    assert batch.prompt_lens == [3, 6]
    assert torch.equal(batch.embeds[0, 1:3], speech[0])
    assert torch.equal(batch.embeds[1, 3:5], speech[1])


@pytest.mark.parametrize(
    ("speech", "lens", "prefix", "message"),
    [
        (torch.zeros(2, 4, 48), [4, 4], [1], "48-dimensional"),
        (torch.zeros(2, 4, 32), [4], [1], "has 1 entries"),
        (torch.zeros(2, 4, 32), [4, 0], [1], r"row 1: 0"),
        (torch.zeros(2, 4, 32), [4, 4], [[1], [2], [3]], "has 3 rows"),
        (torch.zeros(2, 4, 32), [4, 4], [1, [2]], "mixes token ids"),
        (torch.zeros(4, 32), [4], [1], r"\[batch, positions, dim\]"),
    ],
)
def test_bad_speech_batches_are_refused(
    speech: torch.Tensor, lens: list[int], prefix: object, message: str
) -> None:
    model = tiny_llama()
    with pytest.raises(ValueError, match=message):
        splice_speech_prompts(model, speech, lens, prefix, [2])  # type: ignore[arg-type]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_speech_prompts_generate_the_answer(beam_size: int) -> None:
    # The suffix ends with <start>; the scripted LLM answers a b c <eot>.
    start, a, b, c, eot = 9, 1, 2, 3, 15
    model = scripted_llama({start: a, a: b, b: c, c: eot})
    speech = random_prompts([4, 7, 2], model.model_dim, seed=32)

    batch = splice_speech_prompts(model, speech, [4, 7, 2], [5, 6], [7, start])
    results = generate_from_embeddings(
        model,
        batch.embeds,
        batch.prompt_lens,
        stop_token_ids=[eot],
        config=GenerationConfig(beam_size=beam_size),
        num_speech_positions=batch.num_speech_positions,
    )

    for result in results:
        assert result.tokens == [a, b, c]
        assert result.stop_reason == "eos"
    # Default budget: min(256, 1.0 * speech positions + 32).
    assert [r.max_new_tokens for r in results] == [36, 39, 34]
