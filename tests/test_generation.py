"""Greedy decoding and beam search from prompt embeddings against full-forward references."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import pytest
import torch
from fairseq2.models.transformer import CausalAttentionBias
from fairseq2.nn import BatchLayout

from speechmapper_plugin.generation import (
    DecodingStep,
    GenerationConfig,
    GenerationResult,
    RepetitionGuardConfig,
    generate_from_embeddings,
)
from speechmapper_plugin.generation.beam import BeamSearch
from speechmapper_plugin.generation.decoder import EmbeddingDecoder, RowStartBias
from speechmapper_plugin.generation.inputs import prepare_inputs
from speechmapper_plugin.llm import embed_token_ids
from tests.support.generation import (
    random_prompts,
    reference_greedy,
    scripted_llama,
    teacher_forced_log_prob,
    tiny_llama,
)

NO_GUARD = RepetitionGuardConfig(enabled=False)


def assert_same_results(
    actual: list[GenerationResult], expected: list[GenerationResult]
) -> None:
    assert len(actual) == len(expected)
    for example, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.max_new_tokens == e.max_new_tokens, example
        assert [h.tokens for h in a.hypotheses] == [h.tokens for h in e.hypotheses]
        assert [h.stop_reason for h in a.hypotheses] == [
            h.stop_reason for h in e.hypotheses
        ]
        assert [h.loop for h in a.hypotheses] == [h.loop for h in e.hypotheses]
        for ha, he in zip(a.hypotheses, e.hypotheses, strict=True):
            assert ha.score == pytest.approx(he.score, abs=1e-4)
            assert ha.token_log_probs == pytest.approx(he.token_log_probs, abs=1e-4)


def first_new_token(tokens: list[int], min_index: int) -> int:
    """A token of ``tokens`` at index >= ``min_index`` that does not occur before it."""
    for index in range(min_index, len(tokens)):
        if tokens[index] not in tokens[:index]:
            return tokens[index]
    raise AssertionError(f"no new token in {tokens}")


def test_greedy_equals_argmax_of_full_forward_passes() -> None:
    model = tiny_llama(logit_scale=3.0)
    prompt_lens = [4, 9, 15, 6]
    prompts = random_prompts(prompt_lens, model.model_dim)
    budget = 12

    # A stop token that row 0 reaches at its fourth step or later, so the batch
    # mixes hypotheses ending on the stop token and on the budget.
    free_run, _, _ = reference_greedy(
        model, prompts[0, :4], stop_token_ids=[], max_new_tokens=budget
    )
    stop_ids = [first_new_token(free_run, 3)]

    config = GenerationConfig(max_new_tokens=budget, repetition_guard=NO_GUARD)
    results = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=stop_ids, config=config
    )

    reasons = set()
    for row, length in enumerate(prompt_lens):
        tokens, log_probs, reason = reference_greedy(
            model, prompts[row, :length], stop_token_ids=stop_ids, max_new_tokens=budget
        )
        best = results[row].best
        assert best.tokens == tokens, row
        assert best.stop_reason == reason, row
        assert best.token_log_probs == pytest.approx(log_probs, abs=1e-5)
        reasons.add(reason)

    assert reasons == {"eos", "max_length"}
    assert results[0].stop_reason == "eos"
    assert results[0].best.stop_token_id == stop_ids[0]


# Few stop tokens: most hypotheses run to their budget (or loop); many: most
# examples collect their hypotheses early and leave the batch at different steps.
STOP_SETS = {"few_stops": [5, 17, 42], "many_stops": list(range(0, 97, 8))}


@pytest.mark.parametrize("stops", STOP_SETS.keys())
@pytest.mark.parametrize("beam_size", [1, 3, 4])
def test_batched_generation_equals_one_by_one(beam_size: int, stops: str) -> None:
    model = tiny_llama(logit_scale=2.0)
    prompt_lens = [3, 11, 6, 17, 9]
    num_speech_positions = [1, 9, 4, 15, 7]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=2)
    stop_ids = STOP_SETS[stops]
    config = GenerationConfig(
        beam_size=beam_size, max_new_tokens=14, max_gen_len=(0.5, 6)
    )

    batched = generate_from_embeddings(
        model,
        prompts,
        prompt_lens,
        stop_token_ids=stop_ids,
        config=config,
        num_speech_positions=num_speech_positions,
    )

    one_by_one = [
        generate_from_embeddings(
            model,
            prompts[row : row + 1, :length],
            [length],
            stop_token_ids=stop_ids,
            config=config,
            num_speech_positions=[num_speech_positions[row]],
        )[0]
        for row, length in enumerate(prompt_lens)
    ]

    assert_same_results(batched, one_by_one)
    assert [r.max_new_tokens for r in batched] == [6, 10, 8, 13, 9]
    for result in batched:
        assert 1 <= len(result.hypotheses) <= beam_size


def test_batch_order_does_not_matter() -> None:
    model = tiny_llama(logit_scale=2.0)
    prompt_lens = [5, 12, 8]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=3)
    config = GenerationConfig(beam_size=3, max_new_tokens=10)
    order = [2, 0, 1]

    forward = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[1], config=config
    )
    permuted = generate_from_embeddings(
        model,
        prompts[order],
        [prompt_lens[i] for i in order],
        stop_token_ids=[1],
        config=config,
    )

    assert_same_results([forward[i] for i in order], permuted)


def test_beam_size_one_equals_greedy() -> None:
    model = tiny_llama(logit_scale=2.0)
    prompt_lens = [3, 11, 6, 17]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=4)
    config = GenerationConfig(beam_size=1, max_new_tokens=16)

    greedy = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[7, 8], config=config
    )
    # The entry point takes the greedy path for one beam; run beam search itself.
    inputs = prepare_inputs(
        model,
        prompts,
        prompt_lens,
        stop_token_ids=[7, 8],
        config=config,
        num_speech_positions=None,
    )
    with torch.inference_mode():
        beam = BeamSearch(model, inputs, config).run()

    assert_same_results(beam, greedy)


def test_beam_hypotheses_are_scored_like_a_full_forward_pass() -> None:
    """Each n-best entry's log-probability, recomputed from scratch, matches:
    the KV cache followed every beam through its reorderings."""
    model = tiny_llama(logit_scale=2.0)
    prompt_lens = [7, 13, 4]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=5)
    config = GenerationConfig(beam_size=4, max_new_tokens=12, len_penalty=0.7)

    results = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[3, 30], config=config
    )

    for row, result in enumerate(results):
        prompt = prompts[row, : prompt_lens[row]]
        hypotheses = result.hypotheses
        assert len(hypotheses) == 4
        assert [h.score for h in hypotheses] == sorted(
            (h.score for h in hypotheses), reverse=True
        )
        assert len({tuple(h.tokens) for h in hypotheses}) == len(hypotheses)

        for h in hypotheses:
            scored = h.tokens + ([h.stop_token_id] if h.stop_reason == "eos" else [])
            assert all(isinstance(t, int) for t in scored)
            expected = teacher_forced_log_prob(model, prompt, scored)  # type: ignore[arg-type]
            assert h.log_prob == pytest.approx(expected, abs=1e-4)
            assert h.score == pytest.approx(
                h.log_prob / h.num_scored_tokens**0.7, abs=1e-6
            )
            assert len(h.tokens) <= result.max_new_tokens


def test_a_beam_wider_than_all_hypotheses_finds_the_best_one() -> None:
    """With more beams than possible answers, beam search is exhaustive."""
    vocab_size, budget, stop = 5, 3, 0
    model = tiny_llama(vocab_size=vocab_size, logit_scale=2.0, seed=7)
    prompt = random_prompts([6], model.model_dim, seed=6)
    config = GenerationConfig(
        beam_size=125, max_new_tokens=budget, repetition_guard=NO_GUARD
    )

    (result,) = generate_from_embeddings(
        model, prompt, [6], stop_token_ids=[stop], config=config
    )

    words = [t for t in range(vocab_size) if t != stop]
    expected: dict[tuple[int, ...], float] = {}
    for length in range(budget + 1):
        for tokens in itertools.product(words, repeat=length):
            scored = list(tokens) if length == budget else [*tokens, stop]
            log_prob = teacher_forced_log_prob(model, prompt[0], scored)
            expected[tokens] = log_prob / len(scored)

    assert len(result.hypotheses) == len(expected) == 1 + 4 + 16 + 64
    found = {tuple(h.tokens): h.score for h in result.hypotheses}
    assert found.keys() == expected.keys()
    for tokens, score in expected.items():
        assert found[tokens] == pytest.approx(score, abs=1e-5)
    assert result.best.score == pytest.approx(max(expected.values()), abs=1e-6)


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stops_on_the_end_of_turn_token(beam_size: int, dtype: torch.dtype) -> None:
    start, a, b, c, eot, other_eot = 9, 1, 2, 3, 15, 14
    model = scripted_llama({start: a, a: b, b: c, c: eot, 4: other_eot}, dtype=dtype)

    # prompt = speech ++ embed(suffix token); row 1 answers with a stop at once.
    speech = random_prompts([8], model.model_dim, seed=8)[0]
    suffix = embed_token_ids(model, torch.tensor([start, 4])).float()
    prompt_lens = [6, 9]
    prompts = torch.zeros(2, 9, model.model_dim)
    prompts[0, :5], prompts[0, 5] = speech[:5], suffix[0]
    prompts[1, :8], prompts[1, 8] = speech, suffix[1]

    config = GenerationConfig(beam_size=beam_size, max_new_tokens=50)
    results = generate_from_embeddings(
        model,
        prompts,
        prompt_lens,
        stop_token_ids=[eot, other_eot],
        config=config,
    )

    assert results[0].tokens == [a, b, c]
    assert results[0].stop_reason == "eos"
    assert results[0].best.stop_token_id == eot
    assert results[1].tokens == []
    assert results[1].best.stop_token_id == other_eot
    assert results[1].best.num_scored_tokens == 1


def test_min_gen_len_blocks_early_stops() -> None:
    model = tiny_llama(logit_scale=2.0)
    prompts = random_prompts([6, 10], model.model_dim, seed=9)
    short = GenerationConfig(max_new_tokens=8)
    free = generate_from_embeddings(
        model, prompts, [6, 10], stop_token_ids=[0], config=short
    )
    # Stop on the first token each row would generate: without a minimum,
    # both rows end at once.
    stop_ids = [r.tokens[0] for r in free]
    unconstrained = generate_from_embeddings(
        model, prompts, [6, 10], stop_token_ids=stop_ids, config=short
    )
    assert [r.tokens for r in unconstrained] == [[], []]

    for beam_size in (1, 3):
        config = GenerationConfig(beam_size=beam_size, min_gen_len=4, max_new_tokens=8)
        results = generate_from_embeddings(
            model, prompts, [6, 10], stop_token_ids=stop_ids, config=config
        )
        for result in results:
            for h in result.hypotheses:
                assert len(h.tokens) >= 3


@pytest.mark.parametrize("beam_size", [1, 2])
def test_max_length_is_tied_to_the_input_length(beam_size: int) -> None:
    # a -> b -> a -> ... never stops; the guard is off, so only budgets end it.
    a, b, start = 1, 2, 9
    model = scripted_llama({start: a, a: b, b: a}, max_seq_len=40)
    start_embed = embed_token_ids(model, torch.tensor([start]))

    prompt_lens = [3, 6, 10, 36]
    prompts = torch.zeros(4, 36, model.model_dim)
    for row, length in enumerate(prompt_lens):
        prompts[row, length - 1] = start_embed[0]

    config = GenerationConfig(
        beam_size=beam_size,
        max_new_tokens=12,
        max_gen_len=(0.5, 3),
        repetition_guard=NO_GUARD,
    )
    results = generate_from_embeddings(
        model,
        prompts,
        prompt_lens,
        stop_token_ids=[15],
        config=config,
        num_speech_positions=[4, 10, 30, 10],
    )

    # 0.5 * 4 + 3 = 5; 0.5 * 10 + 3 = 8; min(18, max_new_tokens=12);
    # min(8, max_seq_len 40 - 36 = 4).
    assert [r.max_new_tokens for r in results] == [5, 8, 12, 4]
    for result in results:
        assert len(result.best.tokens) == result.max_new_tokens
        assert result.best.tokens == [
            [a, b][i % 2] for i in range(result.max_new_tokens)
        ]
        assert result.stop_reason == "max_length"


def test_without_speech_positions_only_the_caps_apply() -> None:
    model = scripted_llama({1: 2, 2: 1, 9: 1})
    prompt = embed_token_ids(model, torch.tensor([[9]]))
    config = GenerationConfig(max_new_tokens=7, repetition_guard=NO_GUARD)

    (result,) = generate_from_embeddings(
        model, prompt, [1], stop_token_ids=[0], config=config
    )

    assert result.max_new_tokens == 7
    assert len(result.tokens) == 7


def test_lengths_may_be_a_batch_layout_or_a_tensor() -> None:
    model = tiny_llama()
    prompt_lens = [4, 7]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=10).nan_to_num(0.0)
    config = GenerationConfig(max_new_tokens=6)

    from_list = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[2], config=config
    )
    layout = BatchLayout(prompts.shape[:2], seq_lens=prompt_lens)
    from_layout = generate_from_embeddings(
        model, prompts, layout, stop_token_ids=[2], config=config
    )
    from_tensor = generate_from_embeddings(
        model, prompts, torch.tensor(prompt_lens), stop_token_ids=[2], config=config
    )

    assert_same_results(from_layout, from_list)
    assert_same_results(from_tensor, from_list)


def test_the_model_is_left_untouched() -> None:
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prompts = random_prompts([5, 3], model.model_dim, seed=11)

    for beam_size in (1, 3):
        config = GenerationConfig(beam_size=beam_size, max_new_tokens=5)
        generate_from_embeddings(
            model, prompts, [5, 3], stop_token_ids=[1], config=config
        )

    assert not model.training
    for layer in model.decoder.layers:  # the row mask went to a copy of the SDPAs
        assert layer.self_attn.sdpa.bias == CausalAttentionBias()
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def test_a_bfloat16_model_accepts_float32_prompts() -> None:
    model = tiny_llama(dtype=torch.bfloat16)
    prompts = random_prompts([5, 8], model.model_dim, seed=12)

    for beam_size in (1, 2):
        config = GenerationConfig(beam_size=beam_size, max_new_tokens=6)
        results = generate_from_embeddings(
            model, prompts, [5, 8], stop_token_ids=[1], config=config
        )
        for result in results:
            assert 0 <= len(result.tokens) <= 6
            assert all(0 <= t < 97 for t in result.tokens)
            assert torch.isfinite(torch.tensor(result.best.score))


def count_forward_passes(model: torch.nn.Module) -> list[int]:
    """A list that grows by the batch size of each forward pass of ``model``'s
    final projection (one per decoder call: generation projects only the last
    position)."""
    calls: list[int] = []
    model.final_proj.register_forward_hook(
        lambda _module, args, _output: calls.append(args[0].size(0))
    )
    return calls


@pytest.mark.parametrize(
    "config",
    [
        GenerationConfig(max_new_tokens=6, min_gen_len=7),
        GenerationConfig(beam_size=3, max_new_tokens=6, min_gen_len=7),
        GenerationConfig(generator="sampling", max_new_tokens=6, min_gen_len=7),
    ],
    ids=["greedy", "beam", "sampling"],
)
def test_uneven_prompts_are_read_in_one_forward_pass(config: GenerationConfig) -> None:
    """Prompts of 3 to 17 positions: one pass reads them all, then one pass per
    new token with every row in it (stepping through the 14 positions by which
    the longest prompt outruns the shortest would take 14 more)."""
    model = tiny_llama(logit_scale=2.0)
    prompt_lens = [3, 11, 6, 17, 9]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=5)
    config = replace(config, repetition_guard=NO_GUARD)
    calls = count_forward_passes(model)

    results = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[1], config=config
    )

    assert [len(r.tokens) for r in results] == [6] * 5
    rows = len(prompt_lens) * config.beam_size
    assert calls == [rows] * 6


def test_prompts_that_would_outrun_max_seq_len_when_aligned_are_stepped_through() -> (
    None
):
    """Right-aligned, the longest prompt (17) plus the largest budget (10)
    passes ``max_seq_len`` (24); left-aligned they fit, and decode as alone."""
    model = tiny_llama(logit_scale=2.0, max_seq_len=24)
    prompt_lens = [3, 17]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=6)
    config = GenerationConfig(max_new_tokens=10, repetition_guard=NO_GUARD)
    calls = count_forward_passes(model)

    batched = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[1], config=config
    )
    stepped = len(calls)
    one_by_one = [
        generate_from_embeddings(
            model,
            prompts[row : row + 1, :length],
            [length],
            stop_token_ids=[1],
            config=config,
        )[0]
        for row, length in enumerate(prompt_lens)
    ]

    assert [r.max_new_tokens for r in batched] == [10, 7]
    assert stepped > 10
    assert_same_results(batched, one_by_one)


def test_row_start_bias_hides_each_rows_padding() -> None:
    """Two rows starting at positions 0 and 2; the last 2 of 4 positions query
    (worked by hand: 0 where a query sees a key, -inf elsewhere)."""
    bias = RowStartBias(torch.tensor([0, 2]))
    inf = float("-inf")

    tensor = bias.create_bias_tensor(2, 4, torch.device("cpu"), torch.float32)

    assert tensor.shape == (2, 1, 2, 4)
    expected = torch.tensor(
        [
            [[0.0, 0.0, 0.0, inf], [0.0, 0.0, 0.0, 0.0]],
            [[inf, inf, 0.0, inf], [inf, inf, 0.0, 0.0]],
        ]
    )
    assert torch.equal(tensor[:, 0], expected)

    # A padding query (row 1 at position 0) sees only itself.
    prefill = bias.create_bias_tensor(4, 4, torch.device("cpu"), torch.float32)
    assert prefill[1, 0, 0].tolist() == [0.0, inf, inf, inf]

    bias.reorder(torch.tensor([1, 1, 0]))
    assert bias.starts.tolist() == [2, 2, 0]


def test_windowed_or_flash_attention_keeps_prompts_left_aligned() -> None:
    model = tiny_llama()
    assert EmbeddingDecoder.takes_row_starts(model)

    for layer in model.decoder.layers:
        layer.self_attn.sdpa.bias = CausalAttentionBias(attn_window_len=64)

    assert not EmbeddingDecoder.takes_row_starts(model)
    with pytest.raises(ValueError, match="left-aligned"):
        EmbeddingDecoder(model, 8, row_starts=torch.tensor([0, 1]))


@pytest.mark.parametrize("max_seq_len", [128, 24], ids=["right_aligned", "stepped"])
@pytest.mark.parametrize("generator", ["greedy", "sampling"])
def test_step_callback_gives_each_token_as_it_is_chosen(
    max_seq_len: int, generator: str
) -> None:
    """The tokens the callback gives, step by step, are the answers' tokens
    in order; each example is reported finished once, at the step of its
    last token (or its stop token), and never appears after it. With
    ``max_seq_len`` 24 the prompts are stepped through left-aligned (rows
    still reading their prompt get ``None``)."""
    model = tiny_llama(logit_scale=2.0, max_seq_len=max_seq_len)
    prompt_lens = [3, 17, 9]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=6)
    config = GenerationConfig(max_new_tokens=8, repetition_guard=NO_GUARD)
    if generator == "sampling":
        config = replace(config, generator="sampling")
    # A stop token that example 0 reaches at its third step or later (from a
    # free run; the stop set does not change the draws before it), so the
    # batch mixes answers ending on a stop token and on their budget.
    torch.manual_seed(3)
    free = generate_from_embeddings(
        model, prompts, prompt_lens, stop_token_ids=[96], config=config
    )
    stop_ids = [first_new_token(free[0].tokens, 2)]
    steps: list = []

    torch.manual_seed(3)
    results = generate_from_embeddings(
        model,
        prompts,
        prompt_lens,
        stop_token_ids=stop_ids,
        config=config,
        on_step=steps.append,
    )

    streamed: dict[int, list[int]] = {i: [] for i in range(len(prompt_lens))}
    done: list[int] = []
    for step in steps:
        assert not set(step.examples) & set(done)
        for example, token in zip(step.examples, step.tokens, strict=True):
            if token is not None:
                streamed[example].append(token)
        done.extend(step.finished)
    assert sorted(done) == [0, 1, 2]
    assert [streamed[i] for i in range(3)] == [r.tokens for r in results]
    assert {r.stop_reason for r in results} == {"eos", "max_length"}
    if max_seq_len == 24:  # the longer prompt was still read while 0 generated
        assert any(None in step.tokens and not step.finished for step in steps)


def test_beam_search_never_calls_the_step_callback() -> None:
    model = tiny_llama(logit_scale=2.0)
    prompts = random_prompts([5, 8], model.model_dim, seed=1)
    steps: list = []
    config = GenerationConfig(beam_size=3, max_new_tokens=5)

    results = generate_from_embeddings(
        model, prompts, [5, 8], stop_token_ids=[1], config=config, on_step=steps.append
    )

    assert steps == [] and all(r.tokens for r in results)


def _generation(
    prompt_lens: list[int], config: GenerationConfig, *, seed: int
) -> Callable[..., list[GenerationResult]]:
    """``generate_from_embeddings`` on the tiny Llama with random prompts of
    ``prompt_lens`` (stop token 96), open to the keywords a test varies."""
    model = tiny_llama(logit_scale=2.0)
    prompts = random_prompts(prompt_lens, model.model_dim, seed=seed)
    return partial(
        generate_from_embeddings,
        model,
        prompts,
        prompt_lens,
        stop_token_ids=[96],
        config=config,
    )


def _row_steps(steps: list[DecodingStep]) -> int:
    """The rows the decoder was fed, summed over the steps."""
    return sum(len(step.examples) for step in steps)


def test_a_cancelled_example_leaves_the_batch_with_the_tokens_it_had() -> None:
    """Example 1 cancelled once 3 of its tokens were reported: it ends with
    exactly those tokens and ``stop_reason="cancelled"``, is fed no more
    (fewer row-steps than the uncancelled run), and the other examples'
    answers are the uncancelled run's."""
    generate = _generation(
        [3, 9, 6], GenerationConfig(max_new_tokens=8, repetition_guard=NO_GUARD), seed=6
    )
    full_steps: list[DecodingStep] = []
    full = generate(on_step=full_steps.append)
    assert len(full[1].tokens) > 3  # control: it had more to say

    steps: list[DecodingStep] = []
    seen: list[int] = []

    def on_step(step: DecodingStep) -> None:
        steps.append(step)
        token = dict(zip(step.examples, step.tokens, strict=True)).get(1)
        if token is not None:
            seen.append(token)

    results = generate(
        on_step=on_step, cancelled=lambda example: example == 1 and len(seen) >= 3
    )

    assert results[1].stop_reason == "cancelled"
    assert results[1].tokens == seen == full[1].tokens[:3]
    assert results[1].best.token_log_probs == pytest.approx(
        full[1].best.token_log_probs[:3], abs=1e-4
    )
    assert_same_results([results[0], results[2]], [full[0], full[2]])
    assert "cancelled" not in {full[i].stop_reason for i in range(3)}
    last = max(i for i, step in enumerate(steps) if 1 in step.examples)
    assert all(1 not in step.examples for step in steps[last + 1 :])
    assert last < len(steps) - 1  # the others went on without it
    assert _row_steps(steps) < _row_steps(full_steps)


@pytest.mark.parametrize("generator", ["greedy", "sampling"])
def test_cancelling_every_example_ends_the_loop(generator: str) -> None:
    """All examples cancelled after the second step: the loop ends there,
    long before the budget, each answer the first two tokens it had."""
    # No stop token before the budget: each answer has 10 tokens to give.
    config = GenerationConfig(
        max_new_tokens=10, min_gen_len=11, repetition_guard=NO_GUARD
    )
    if generator == "sampling":
        config = replace(config, generator="sampling")
    generate = _generation([4, 7], config, seed=2)
    torch.manual_seed(5)
    full = generate()
    assert all(len(r.tokens) > 2 for r in full)  # control

    steps: list[DecodingStep] = []
    torch.manual_seed(5)
    results = generate(on_step=steps.append, cancelled=lambda example: len(steps) >= 2)

    assert len(steps) == 2 < config.max_new_tokens
    assert [r.stop_reason for r in results] == ["cancelled"] * 2
    assert [r.tokens for r in results] == [r.tokens[:2] for r in full]
