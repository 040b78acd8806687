"""The repetition guard: looping models are stopped and the loop is reported."""

from __future__ import annotations

import pytest
import torch
from fairseq2.utils.validation import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from speechmapper_plugin.generation import (
    GenerationConfig,
    RepetitionGuardConfig,
    RepetitionLoop,
    find_repetition_loop,
    generate_from_embeddings,
    stop_reason_counts,
)
from speechmapper_plugin.generation.repetition import (
    completion_mask,
    loop_completions,
)
from speechmapper_plugin.llm import embed_token_ids
from tests.support.generation import random_prompts, scripted_llama

START, A, B, C, EOT = 9, 1, 2, 3, 15


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_looping_model_is_stopped_by_the_guard(beam_size: int) -> None:
    # START -> a -> b -> c -> a -> b -> c ... and never the end-of-turn token.
    model = scripted_llama({START: A, A: B, B: C, C: A}, never=[EOT])
    prompt_lens = [5, 9]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=20).nan_to_num(0.0)
    start = embed_token_ids(model, torch.tensor([START]))[0]
    for row, length in enumerate(prompt_lens):
        prompts[row, length - 1] = start

    config = GenerationConfig(beam_size=beam_size, max_new_tokens=100)
    results = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[EOT], config=config
    )

    for result in results:
        best = result.best
        assert best.stop_reason == "repetition"
        # The default guard stops at the 4th copy of the 3-gram: 12 of 100 tokens.
        assert best.tokens == [A, B, C] * 4
        assert best.loop == RepetitionLoop(ngram_size=3, num_repeats=4, start=0)
        assert best.trimmed_tokens() == [A, B, C]
        assert best.log_prob == pytest.approx(0.0, abs=1e-3)

    assert stop_reason_counts(results) == {"eos": 0, "max_length": 0, "repetition": 2}


def test_without_the_guard_the_loop_runs_to_the_budget() -> None:
    model = scripted_llama({START: A, A: B, B: C, C: A})
    prompt = embed_token_ids(model, torch.tensor([[7, START]]))
    config = GenerationConfig(
        max_new_tokens=60, repetition_guard=RepetitionGuardConfig(enabled=False)
    )

    (result,) = generate_from_embeddings(
        model, prompt, [2], stop_token_ids=[EOT], config=config
    )

    assert result.stop_reason == "max_length"
    assert len(result.tokens) == 60
    assert result.best.loop is None


def test_a_repeated_token_is_judged_by_token_repeats() -> None:
    model = scripted_llama({START: A, A: A})
    prompt = embed_token_ids(model, torch.tensor([[START]]))
    guard = RepetitionGuardConfig(token_repeats=6, ngram_repeats=2)
    config = GenerationConfig(max_new_tokens=100, repetition_guard=guard)

    (result,) = generate_from_embeddings(
        model, prompt, [1], stop_token_ids=[EOT], config=config
    )

    # Not stopped at 4 tokens ("a a" twice): one-token n-grams only count
    # through `token_repeats`.
    assert result.tokens == [A] * 6
    assert result.best.loop == RepetitionLoop(ngram_size=1, num_repeats=6, start=0)
    assert result.best.trimmed_tokens() == [A]


def test_a_loop_after_a_lead_in_reports_where_it_starts() -> None:
    # START -> 4 -> 5 -> a -> b -> a -> b ...
    model = scripted_llama({START: 4, 4: 5, 5: A, A: B, B: A})
    prompt = embed_token_ids(model, torch.tensor([[START]]))
    config = GenerationConfig(max_new_tokens=100)

    (result,) = generate_from_embeddings(
        model, prompt, [1], stop_token_ids=[EOT], config=config
    )

    assert result.tokens == [4, 5] + [A, B] * 4
    assert result.best.loop == RepetitionLoop(ngram_size=2, num_repeats=4, start=2)
    assert result.best.trimmed_tokens() == [4, 5, A, B]


def test_find_repetition_loop_definition() -> None:
    guard = RepetitionGuardConfig(max_ngram_size=4, ngram_repeats=3, token_repeats=5)

    assert find_repetition_loop([1, 2, 1, 2, 1, 2], guard) == RepetitionLoop(2, 3, 0)
    assert find_repetition_loop([1, 2, 1, 2, 1], guard) is None
    assert find_repetition_loop([7, 7, 7, 7], guard) is None
    assert find_repetition_loop([9, 7, 7, 7, 7, 7], guard) == RepetitionLoop(1, 5, 1)
    # 5-grams are longer than max_ngram_size.
    assert find_repetition_loop([1, 2, 3, 4, 5] * 3, guard) is None
    assert (
        find_repetition_loop([1, 2, 1, 2, 1, 2], RepetitionGuardConfig(enabled=False))
        is None
    )


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 2), min_size=1, max_size=40),
    lead=st.integers(0, 5),
    max_ngram_size=st.integers(0, 5),
    ngram_repeats=st.integers(2, 4),
    token_repeats=st.sampled_from([0, 2, 3, 5]),
)
def test_incremental_detection_matches_the_definition(
    tokens: list[int],
    lead: int,
    max_ngram_size: int,
    ngram_repeats: int,
    token_repeats: int,
) -> None:
    """Token by token, a token completes a loop exactly when the generated
    tokens then end with a loop; prompt positions never count."""
    guard = RepetitionGuardConfig(
        max_ngram_size=max_ngram_size,
        ngram_repeats=ngram_repeats,
        token_repeats=token_repeats,
    )
    periods = guard.periods()
    vocab_size = 3

    # Row 0 generates after `lead` prompt positions; row 1 has its prompt
    # filled with copies of the first token, which must not count as a loop.
    width = lead + len(tokens) + 1
    seqs = torch.full((2, width), -1, dtype=torch.int64)
    seqs[1, :lead] = tokens[0]

    for step, token in enumerate(tokens):
        position = lead + step
        num_generated = torch.tensor([step, step])
        completions = loop_completions(seqs, num_generated, position, periods)
        mask = completion_mask(completions, vocab_size)

        expected = find_repetition_loop(tokens[: step + 1], guard) is not None
        assert bool((completions[0] == token).any()) == expected
        assert bool(mask[0, token]) == expected
        assert bool((completions[1] == token).any()) == expected

        seqs[:, position] = token


def test_guard_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="ngram_repeats"):
        GenerationConfig(
            repetition_guard=RepetitionGuardConfig(ngram_repeats=1)
        ).check()
    with pytest.raises(ValidationError, match="token_repeats"):
        GenerationConfig(
            repetition_guard=RepetitionGuardConfig(token_repeats=1)
        ).check()
    with pytest.raises(ValidationError, match="max_ngram_size"):
        GenerationConfig(
            repetition_guard=RepetitionGuardConfig(max_ngram_size=-1)
        ).check()

    assert RepetitionGuardConfig(enabled=False).periods() == []
    assert RepetitionGuardConfig(max_ngram_size=3, token_repeats=0).periods() == [
        (2, 4),
        (3, 4),
    ]
