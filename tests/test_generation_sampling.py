"""Sampling (temperature, top-p, top-k) and fairseq2's option names, against
references computed here from full forward passes."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
import torch
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.config import TopKSamplerConfig, TopPSamplerConfig
from fairseq2.utils.structured import StandardValueConverter
from fairseq2.utils.validation import ValidationError
from torch import Tensor

from speechmapper_plugin.generation import (
    GenerationConfig,
    RepetitionGuardConfig,
    SamplerSection,
    generate_from_embeddings,
)
from tests.support.generation import full_forward_logits, random_prompts, tiny_llama

NO_GUARD = RepetitionGuardConfig(enabled=False)


def top_p_filtered(probs: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """The nucleus of ``probs`` (``[V]``), sorted: the most likely tokens up
    to and including the first one that takes the sum past ``p``,
    renormalised; and the token ids in that order."""
    sorted_probs, order = probs.sort(descending=True)
    keep = torch.zeros_like(sorted_probs, dtype=torch.bool)
    total = 0.0
    for i, prob in enumerate(sorted_probs.tolist()):
        keep[i] = True
        total += prob
        if total > p:
            break
    nucleus = torch.where(keep, sorted_probs, 0.0)
    return nucleus / nucleus.sum(), order


@torch.inference_mode()
def reference_top_p(
    model: TransformerLM,
    prompt: Tensor,
    *,
    p: float,
    temperature: float,
    stop_token_ids: Sequence[int],
    max_new_tokens: int,
) -> list[int]:
    """Top-p sampling by a full forward pass per step and one
    ``torch.multinomial`` draw over the nucleus (the draws fairseq2's
    ``TopPSampler`` makes, so the same seed gives the same tokens)."""
    seq = prompt
    tokens: list[int] = []
    for _ in range(max_new_tokens):
        logits = full_forward_logits(model, seq).float() / temperature
        nucleus, order = top_p_filtered(logits.softmax(-1), p)
        token = int(order[torch.multinomial(nucleus.unsqueeze(0), 1)[0, 0]])
        if token in stop_token_ids:
            break
        tokens.append(token)
        token_embed = model.decoder_frontend.embed(torch.tensor([token]))
        seq = torch.cat([seq, token_embed.to(seq.dtype)])
    return tokens


def sampling(**kwargs: object) -> GenerationConfig:
    return GenerationConfig(generator="sampling", repetition_guard=NO_GUARD, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("p", "temperature"), [(0.9, 1.0), (0.6, 1.5), (1.0, 0.7)])
def test_top_p_sampling_equals_a_seeded_reference(p: float, temperature: float) -> None:
    model = tiny_llama(logit_scale=2.0)
    prompt = random_prompts([7], model.model_dim, seed=3)
    config = sampling(
        temperature=temperature,
        sampler=SamplerSection(top_p=TopPSamplerConfig(p=p)),
        max_new_tokens=20,
    )

    for seed in range(4):
        torch.manual_seed(seed)
        (result,) = generate_from_embeddings(
            model, prompt, [7], stop_token_ids=[5], config=config
        )
        torch.manual_seed(seed)
        expected = reference_top_p(
            model,
            prompt[0],
            p=p,
            temperature=temperature,
            stop_token_ids=[5],
            max_new_tokens=20,
        )
        assert result.tokens == expected, seed


def test_samples_differ_between_seeds_and_repeat_with_one() -> None:
    """A control for the test above: sampling is not greedy in disguise."""
    model = tiny_llama(logit_scale=1.0)
    prompts = random_prompts([6, 9], model.model_dim, seed=8)
    config = sampling(max_new_tokens=12)

    def draw(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        results = generate_from_embeddings(
            model, prompts, [6, 9], stop_token_ids=[0], config=config
        )
        return [r.tokens for r in results]

    greedy = generate_from_embeddings(
        model, prompts, [6, 9], stop_token_ids=[0], config=config
    )
    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert draw(1) != [r.tokens for r in greedy]


def test_a_near_zero_temperature_and_top_k_1_sample_the_greedy_tokens() -> None:
    model = tiny_llama(logit_scale=3.0)
    prompt_lens = [4, 9, 15, 6]
    prompts = random_prompts(prompt_lens, model.model_dim, seed=2)
    greedy = generate_from_embeddings(
        model,
        prompts,
        prompt_lens,
        stop_token_ids=[3],
        config=GenerationConfig(max_new_tokens=12, repetition_guard=NO_GUARD),
    )

    cold = sampling(temperature=1e-4, max_new_tokens=12)
    top_1 = sampling(
        sampler=SamplerSection(name="top_k", top_k=TopKSamplerConfig(k=1)),
        max_new_tokens=12,
    )
    for config in (cold, top_1):
        torch.manual_seed(0)
        sampled = generate_from_embeddings(
            model, prompts, prompt_lens, stop_token_ids=[3], config=config
        )
        assert [r.tokens for r in sampled] == [r.tokens for r in greedy]
        assert [r.stop_reason for r in sampled] == [r.stop_reason for r in greedy]


def test_top_k_samples_only_the_k_most_likely_first_tokens() -> None:
    model = tiny_llama(logit_scale=1.0)
    prompt = random_prompts([5], model.model_dim, seed=6)
    logits = full_forward_logits(model, prompt[0])
    allowed = set(logits.topk(3).indices.tolist())
    stop = next(t for t in range(logits.numel()) if t not in allowed)

    config = sampling(
        sampler=SamplerSection(name="top_k", top_k=TopKSamplerConfig(k=3)),
        max_gen_len=1,
    )
    firsts = set()
    for seed in range(40):
        torch.manual_seed(seed)
        (result,) = generate_from_embeddings(
            model, prompt, [5], stop_token_ids=[stop], config=config
        )
        firsts.add(result.tokens[0])

    assert firsts == allowed


def test_stop_tokens_are_blocked_until_min_gen_len() -> None:
    model = tiny_llama(logit_scale=1.0)
    prompt = random_prompts([5], model.model_dim, seed=6)
    # Every token but one stops: without the minimum, samples end at once.
    stop_ids = [t for t in range(model.final_proj.output_dim) if t != 11]
    config = sampling(min_gen_len=4, max_new_tokens=10)

    for seed in range(5):
        torch.manual_seed(seed)
        (result,) = generate_from_embeddings(
            model, prompt, [5], stop_token_ids=stop_ids, config=config
        )
        assert result.tokens == [11, 11, 11], seed
        assert result.stop_reason == "eos"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (GenerationConfig(generator="sampling", beam_size=2), "`beam_size` must be 1"),
        (GenerationConfig(temperature=0.0), "`temperature` must be positive"),
        (
            GenerationConfig(sampler=SamplerSection(top_p=TopPSamplerConfig(p=1.5))),
            "`p` must be greater than 0.0",
        ),
        (
            GenerationConfig(sampler=SamplerSection(name="nucleus")),  # type: ignore[arg-type]
            "must be `top_p` or `top_k`",
        ),
        (GenerationConfig(generator="greedy"), "`generator` must be"),  # type: ignore[arg-type]
        (GenerationConfig(max_gen_len=3, min_gen_len=5), "at least `min_gen_len`"),
    ],
)
def test_invalid_sampling_configs_are_refused(
    config: GenerationConfig, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        config.check()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"max_len_a": 1.0}, "`max_gen_len: [a, b]`"),
        ({"max_len_b": 16}, "`max_gen_len: [a, b]`"),
        ({"min_new_tokens": 2}, "`min_gen_len"),
        ({"length_penalty": 0.8}, "`len_penalty`"),
    ],
)
def test_an_old_field_name_names_its_new_one(old: dict[str, object], new: str) -> None:
    config = StandardValueConverter().structure(old, GenerationConfig)

    with pytest.raises(ValidationError, match=re.escape(new)):
        config.check()


def test_fairseq2_yaml_values_structure() -> None:
    converter = StandardValueConverter()
    config = converter.structure(
        {
            "generator": "sampling",
            "temperature": 0.7,
            "max_gen_len": [0.5, 8],
            "min_gen_len": 2,
            "len_penalty": 1.2,
            "sampler": {"name": "top_k", "top_k": {"k": 5}},
        },
        GenerationConfig,
    )

    assert config.max_gen_len == (0.5, 8)
    assert config.sampler.top_k == TopKSamplerConfig(k=5)
    assert (
        converter.structure(converter.unstructure(config), GenerationConfig) == config
    )

    fixed = converter.structure({"max_gen_len": 12}, GenerationConfig)
    assert fixed.max_gen_len == 12
