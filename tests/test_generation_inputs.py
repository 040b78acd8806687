"""Bad input to generation gets a clear error before any decoding."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.utils.structured import StandardValueConverter
from fairseq2.utils.validation import ValidationError

from speechmapper_plugin.generation import (
    GenerationConfig,
    GenerationError,
    PromptTooLongError,
    generate_from_embeddings,
    token_budgets,
)
from tests.support.generation import random_prompts, tiny_llama

DIM = 32  # tiny_llama's model_dim

SEARCHES = [
    functools.partial(generate_from_embeddings, config=config)
    for config in (
        GenerationConfig(),
        GenerationConfig(beam_size=2),
        GenerationConfig(generator="sampling"),
    )
]
"""The one entry point, on each of its searches (greedy, beam, sampling)."""


Run = Callable[..., Any]


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    # Built in a fixture: the fairseq2 runtime starts in the session fixture.
    return tiny_llama(model_dim=DIM, max_seq_len=32)


@pytest.fixture
def run(model: TransformerLM) -> Run:
    """``run(search, prompts, lens, **kwargs)`` with the model and a stop token."""

    def run(search: Run, prompts: torch.Tensor, lens: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("stop_token_ids", [1])
        return search(model, prompts, lens, **kwargs)

    return run


@pytest.mark.parametrize("search", SEARCHES)
def test_an_empty_batch_is_refused(run: Run, search: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="empty batch"):
        run(search, torch.zeros(0, 4, DIM), [])


@pytest.mark.parametrize("search", SEARCHES)
def test_a_mismatched_embedding_width_is_refused(
    run: Run, search: Callable[..., Any]
) -> None:
    with pytest.raises(ValueError, match=rf"48-dimensional.*expects {DIM}"):
        run(search, torch.zeros(2, 4, 48), [4, 3])


def test_prompts_must_be_three_dimensional(run: Run) -> None:
    with pytest.raises(ValueError, match=r"\[batch, positions, model_dim\]"):
        run(generate_from_embeddings, torch.zeros(4, DIM), [4])


def test_prompts_must_be_floating_point(run: Run) -> None:
    with pytest.raises(TypeError, match="floating-point"):
        run(generate_from_embeddings, torch.zeros(1, 4, DIM, dtype=torch.int64), [4])


def test_prompts_must_be_on_the_model_device(run: Run) -> None:
    with pytest.raises(ValueError, match="is on meta"):
        run(generate_from_embeddings, torch.zeros(1, 4, DIM, device="meta"), [4])


@pytest.mark.parametrize(
    ("lens", "message"),
    [
        ([4], "has 1 entries, but `prompt_embeds` holds 2"),
        ([4, 0], r"must be in \[1, 4\].*row 1: 0"),
        ([5, 2], r"must be in \[1, 4\].*row 0: 5"),
        (torch.tensor([[4, 2]]), "1-D integer tensor"),
    ],
)
def test_bad_prompt_lengths_are_refused(run: Run, lens: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(generate_from_embeddings, torch.zeros(2, 4, DIM), lens)


def test_nan_inside_a_prompt_is_refused_but_not_in_padding(run: Run) -> None:
    prompts = random_prompts([3, 4, 2], DIM)  # NaN padding is fine
    run(
        generate_from_embeddings,
        prompts,
        [3, 4, 2],
        config=GenerationConfig(max_new_tokens=2),
    )

    prompts[1, 2, 5] = torch.nan
    with pytest.raises(ValueError, match=r"NaN or infinite.*rows \[1\]"):
        run(generate_from_embeddings, prompts, [3, 4, 2])


@pytest.mark.parametrize(
    ("stop_ids", "message"),
    [([], "`stop_token_ids` is empty"), ([1, 97], r"\[97\] are outside")],
)
def test_bad_stop_tokens_are_refused(
    run: Run, stop_ids: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run(
            generate_from_embeddings,
            torch.zeros(1, 4, DIM),
            [4],
            stop_token_ids=stop_ids,
        )


@pytest.mark.parametrize(
    ("positions", "message"),
    [([3], "has 1 entries"), ([3, -1], "must be non-negative.*row 1: -1")],
)
def test_bad_speech_positions_are_refused(
    run: Run, positions: list[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run(
            generate_from_embeddings,
            torch.zeros(2, 4, DIM),
            [4, 4],
            num_speech_positions=positions,
        )


def test_prompts_that_fill_the_model_are_refused_by_row(run: Run) -> None:
    prompts = torch.zeros(3, 32, DIM)
    with pytest.raises(PromptTooLongError, match=r"row 1: 32 positions") as info:
        run(generate_from_embeddings, prompts, [31, 32, 5])
    assert info.value.rows == [1]


def test_a_model_in_training_mode_is_refused() -> None:
    model = tiny_llama()
    model.train()
    with pytest.raises(ValueError, match=r"training mode.*model.eval\(\)"):
        generate_from_embeddings(model, torch.zeros(1, 4, DIM), [4], stop_token_ids=[1])
    assert model.training


def test_only_transformer_lms_are_accepted() -> None:
    with pytest.raises(TypeError, match="TransformerLM"):
        generate_from_embeddings(
            torch.nn.Linear(2, 2),  # type: ignore[arg-type]
            torch.zeros(1, 4, DIM),
            [4],
            stop_token_ids=[1],
        )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (GenerationConfig(beam_size=0), "beam_size"),
        (GenerationConfig(max_new_tokens=0), "max_new_tokens"),
        (GenerationConfig(max_gen_len=(-1.0, 4)), "max_gen_len"),
        (GenerationConfig(max_gen_len=(1.0, 0)), "max_gen_len"),
        (GenerationConfig(min_gen_len=0), "min_gen_len"),
        (GenerationConfig(len_penalty=-0.5), "len_penalty"),
    ],
)
def test_invalid_configs_are_refused(
    run: Run, config: GenerationConfig, field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        run(generate_from_embeddings, torch.zeros(1, 4, DIM), [4], config=config)


def test_token_budgets() -> None:
    config = GenerationConfig(max_new_tokens=20, max_gen_len=(1.5, 2))
    # floor(1.5 * 3 + 2) = 6; floor(1.5 * 13 + 2) = 21 -> 20; room left 100 - 95 = 5.
    assert token_budgets(config, [10, 10, 95], [3, 13, 13], 100) == [6, 20, 5]
    assert token_budgets(config, [10, 95], None, 100) == [20, 5]


def test_nan_logits_stop_generation_with_a_clear_error() -> None:
    model = tiny_llama()
    with torch.no_grad():
        model.final_proj.weight[7, 0] = torch.nan

    with pytest.raises(
        GenerationError, match=r"NaN logits at position 3 for batch rows \[0, 1\]"
    ):
        generate_from_embeddings(
            model, torch.ones(2, 4, DIM), [4, 4], stop_token_ids=[1]
        )


def test_the_config_reads_from_recipe_yaml_values() -> None:
    """Recipes structure their config sections with fairseq2's value converter."""
    converter = StandardValueConverter()

    config = converter.structure(
        {"beam_size": 4, "repetition_guard": {"ngram_repeats": 3}}, GenerationConfig
    )

    assert config.beam_size == 4
    assert config.repetition_guard.ngram_repeats == 3
    assert config.repetition_guard.token_repeats == 8
    assert (
        converter.structure(converter.unstructure(config), GenerationConfig) == config
    )
