"""The entry point: generation from speech (prompt) embeddings.

Every caller generates through :func:`generate_from_embeddings`; the
searches behind it take inputs it has validated once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from fairseq2.models.transformer_lm import TransformerLM
from torch import Tensor

from speechmapper_plugin.generation.beam import BeamSearch
from speechmapper_plugin.generation.config import GenerationConfig
from speechmapper_plugin.generation.hypothesis import GenerationResult
from speechmapper_plugin.generation.inputs import LengthsLike, prepare_inputs
from speechmapper_plugin.generation.single import (
    CancelCheck,
    OneHypothesisSearch,
    StepCallback,
    argmax,
    sampled,
)


@torch.inference_mode()
def generate_from_embeddings(
    model: TransformerLM,
    prompt_embeds: Tensor,
    prompt_lens: LengthsLike,
    *,
    stop_token_ids: Sequence[int],
    config: GenerationConfig | None = None,
    num_speech_positions: Sequence[int] | Tensor | None = None,
    on_step: StepCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> list[GenerationResult]:
    """Generate answers to prompts given as embeddings, one result per prompt.

    ``config.generator`` picks the search: ``beam_search`` (greedy when
    ``config.beam_size == 1``) or ``sampling``. Runs under
    ``torch.inference_mode()``; the model is neither modified nor switched
    between train and eval mode (it must already be in eval mode).

    :param model: A fairseq2 ``TransformerLM`` (llama family: its frontend
        embeds tokens without absolute positions), in eval mode.
    :param prompt_embeds: ``[B, S, D]`` decoder inputs, right-padded: for
        SpeechMapper, ``embed(prefix ids) ++ speech embeddings ++ embed(suffix
        ids)`` (see :func:`embed_token_ids`). Cast to the model's dtype; must
        be on the model's device. Padding is never read.
    :param prompt_lens: The number of prompt positions of each row (a sequence,
        a 1-D tensor, or a padded ``BatchLayout``).
    :param stop_token_ids: The tokens that end an answer: the chat template's
        end-of-turn token(s). Not included in the returned tokens.
    :param config: Search settings; the defaults when ``None``.
    :param num_speech_positions: The number of speech embeddings in each
        prompt; ties each example's token budget to its input length (see
        :class:`GenerationConfig`). Without it only ``max_new_tokens`` and the
        model's ``max_seq_len`` bound the budget.
    :param on_step: Called after every step of greedy decoding or sampling
        with the token each example added (:class:`DecodingStep`), e.g. to
        stream answers while they are generated. Beam search never calls it:
        which tokens survive is known only when it ends.
    :param cancelled: Asked after every step of greedy decoding or sampling
        (after ``on_step``) whether the caller still wants each example's
        answer (:data:`CancelCheck`): a cancelled example leaves the batch at
        once, so the others decode smaller steps and the loop ends when all
        have stopped; its result has the tokens it had and
        ``stop_reason="cancelled"``. Beam search never asks it.
    :raises ValueError: On a bad batch (empty, wrong width, bad lengths, NaN
        in a prompt, bad stop ids), a model in training mode, or an invalid
        config (:class:`fairseq2.utils.validation.ValidationError`).
    :raises PromptTooLongError: If a prompt leaves no room to generate.
    """
    config = config or GenerationConfig()

    inputs = prepare_inputs(
        model,
        prompt_embeds,
        prompt_lens,
        stop_token_ids=stop_token_ids,
        config=config,
        num_speech_positions=num_speech_positions,
    )

    search: BeamSearch | OneHypothesisSearch
    if config.generator == "sampling":
        search = OneHypothesisSearch(
            model, inputs, config, sampled(config.sampler), on_step, cancelled
        )
    elif config.beam_size == 1:
        search = OneHypothesisSearch(model, inputs, config, argmax, on_step, cancelled)
    else:
        search = BeamSearch(model, inputs, config)

    return search.run()
