"""Splicing speech embeddings into token prompts gives the LLM the same input
as the equivalent token sequence."""

from __future__ import annotations

import pytest
import torch
from fairseq2.models.llama import LLaMAConfig, create_llama_model
from fairseq2.nn import BatchLayout

from speechmapper_plugin.llm.assemble import assemble_inputs


def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LLaMAConfig(
        model_dim=32,
        max_seq_len=64,
        vocab_size=50,
        num_layers=2,
        num_attn_heads=4,
        num_key_value_heads=2,
        ffn_inner_dim=64,
        dropout_p=0.0,
    )
    return create_llama_model(config).eval()


def test_assembled_rows_equal_the_token_path() -> None:
    model = tiny_llama()
    embed = model.decoder_frontend.embed

    prefixes = [[1, 2, 3], [4]]
    middles = [[10, 11, 12, 13], [20, 21]]  # the "speech"
    suffixes = [[5, 6], [7, 8, 9]]
    responses = [[30, 31, 2], [40, 2]]

    speech = torch.zeros(2, 4, 32)
    for b, ids in enumerate(middles):
        speech[b, : len(ids)] = embed(torch.tensor(ids))
    speech[1, 2:] = float("nan")  # padding must never be read

    inputs = assemble_inputs(embed, prefixes, speech, [4, 2], suffixes, responses)

    with torch.no_grad():
        hidden = model.decoder(inputs.embeds, inputs.layout)
        logits = model.final_proj(hidden)
        for b in range(2):
            tokens = prefixes[b] + middles[b] + suffixes[b] + responses[b][:-1]
            ids = torch.tensor([tokens])
            expected = model(ids, BatchLayout.of(ids))
            n = len(tokens)
            assert inputs.layout.seq_lens[b] == n
            torch.testing.assert_close(logits[b, :n], expected[0], atol=1e-5, rtol=1e-5)

            # Targets: exactly the response tokens, predicted from the
            # position before each.
            full = tokens + [responses[b][-1]]
            mask = inputs.target_mask[b, :n]
            first = len(prefixes[b]) + len(middles[b]) + len(suffixes[b]) - 1
            assert mask.nonzero().flatten().tolist() == list(range(first, n))
            assert inputs.target_ids[b, :n][mask].tolist() == full[first + 1 :]
    assert inputs.speech_offsets == [3, 1]
    assert inputs.num_targets == 5


def test_gradients_reach_the_speech_embeddings() -> None:
    model = tiny_llama()
    speech = torch.randn(1, 3, 32, requires_grad=True)
    inputs = assemble_inputs(
        model.decoder_frontend.embed, [[1]], speech, [3], [[2]], [[3, 4]]
    )
    hidden = model.decoder(inputs.embeds, inputs.layout)
    logits = model.final_proj(hidden[inputs.target_mask])
    torch.nn.functional.cross_entropy(
        logits, inputs.target_ids[inputs.target_mask]
    ).backward()
    assert speech.grad is not None and torch.all(speech.grad.abs().sum(-1) > 0)


def test_generation_prompt_has_no_targets_and_bad_shapes_are_errors() -> None:
    model = tiny_llama()
    embed = model.decoder_frontend.embed
    inputs = assemble_inputs(embed, [[1]], torch.randn(1, 3, 32), [3], [[2, 3]])
    assert inputs.layout.seq_lens[0] == 6 and inputs.num_targets == 0

    with pytest.raises(ValueError, match="disagree in size"):
        assemble_inputs(embed, [[1], [2]], torch.randn(1, 3, 32), [3], [[2]])
    with pytest.raises(ValueError, match="empty response"):
        assemble_inputs(embed, [[1]], torch.randn(1, 3, 32), [3], [[2]], [[]])
