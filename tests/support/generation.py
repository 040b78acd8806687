"""Tiny fairseq2 llama models and full-forward references for generation tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from fairseq2.data_type import set_dtype
from fairseq2.models.llama import LLaMAConfig, create_llama_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor


def tiny_llama(
    *,
    seed: int = 0,
    vocab_size: int = 97,
    model_dim: int = 32,
    num_layers: int = 2,
    max_seq_len: int = 128,
    logit_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> TransformerLM:
    """A seeded random llama in eval mode, on CPU.

    Built under ``set_dtype`` as fairseq2's hub does: casting a built model
    with ``.to(dtype)`` would also cast its fp32 RoPE tables.

    ``logit_scale`` sharpens the output distribution (random weights give
    nearly uniform ones), so hypotheses differ clearly in score.
    """
    config = LLaMAConfig(
        model_dim=model_dim,
        max_seq_len=max_seq_len,
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_attn_heads=4,
        num_key_value_heads=2,
        ffn_inner_dim=64,
        ffn_inner_dim_multiple_of=8,
    )
    torch.manual_seed(seed)
    with set_dtype(dtype):
        model = create_llama_model(config)
    with torch.no_grad():
        model.final_proj.weight.mul_(logit_scale)
    return model.eval()


def scripted_llama(
    next_token: Mapping[int, int],
    *,
    never: Sequence[int] = (),
    vocab_size: int = 16,
    max_seq_len: int = 128,
    dtype: torch.dtype = torch.float32,
) -> TransformerLM:
    """A real ``TransformerLM`` whose next token depends only on the last input.

    The layers add nothing (their output projections are zero, so only the
    residual path is left) and the embeddings are one-hot, so the final
    projection reads the last input token directly: ``next_token[t]`` follows
    ``t`` with a probability of about 1 (a logit margin of ~57). After a token
    not in the map every logit is 0. Tokens in ``never`` get a logit of -57
    after any token (so they do not tie with the other unlikely tokens).
    """
    model_dim = 32
    if vocab_size > model_dim:
        raise ValueError("One-hot embeddings need `vocab_size <= 32`.")

    model = tiny_llama(
        vocab_size=vocab_size,
        model_dim=model_dim,
        num_layers=1,
        max_seq_len=max_seq_len,
        dtype=dtype,
    )

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("output_proj.weight"):
                param.zero_()

        model.decoder_frontend.embed.weight.copy_(torch.eye(vocab_size, model_dim))

        final_proj = model.final_proj.weight
        final_proj.zero_()
        for token, successor in next_token.items():
            final_proj[successor, token] = 10.0
        for token in never:
            final_proj[token] = -10.0

    return model


def random_prompts(
    prompt_lens: Sequence[int], model_dim: int, *, seed: int = 1
) -> Tensor:
    """``[B, max(prompt_lens), D]`` random "speech" prompts, NaN in the padding.

    NaN padding proves generation never reads past a prompt.
    """
    generator = torch.Generator().manual_seed(seed)
    width = max(prompt_lens)
    embeds = torch.randn(len(prompt_lens), width, model_dim, generator=generator)
    for row, length in enumerate(prompt_lens):
        embeds[row, length:] = torch.nan
    return embeds


def full_forward_logits(model: TransformerLM, embeds: Tensor) -> Tensor:
    """Next-token logits after ``embeds`` (``[S, D]``), by a plain full forward pass."""
    seqs = embeds.unsqueeze(0)
    hidden = model.decoder(seqs, BatchLayout.of(seqs))
    return model.final_proj(hidden)[0, -1]


@torch.inference_mode()
def reference_greedy(
    model: TransformerLM,
    prompt: Tensor,
    *,
    stop_token_ids: Sequence[int],
    max_new_tokens: int,
) -> tuple[list[int], list[float], str]:
    """Greedy decoding by recomputing a full forward pass at every step.

    :returns: tokens, their log-probabilities, and ``"eos"`` or ``"max_length"``.
    """
    seq = prompt
    tokens: list[int] = []
    log_probs: list[float] = []
    for _ in range(max_new_tokens):
        lprobs = full_forward_logits(model, seq).float().log_softmax(-1)
        token = int(lprobs.argmax())
        if token in stop_token_ids:
            return tokens, log_probs, "eos"
        tokens.append(token)
        log_probs.append(float(lprobs[token]))
        token_embed = model.decoder_frontend.embed(torch.tensor([token]))
        seq = torch.cat([seq, token_embed.to(seq.dtype)])
    return tokens, log_probs, "max_length"


@torch.inference_mode()
def teacher_forced_log_prob(
    model: TransformerLM, prompt: Tensor, tokens: Sequence[int]
) -> float:
    """The log-probability of ``tokens`` after ``prompt``, from one full forward pass."""
    ids = torch.tensor(list(tokens), dtype=torch.int64)
    seq = torch.cat([prompt, model.decoder_frontend.embed(ids)]).unsqueeze(0)
    hidden = model.decoder(seq, BatchLayout.of(seq))
    lprobs = model.final_proj(hidden)[0].float().log_softmax(-1)
    start = prompt.size(0) - 1
    steps = lprobs[start : start + len(tokens)]
    return float(steps.gather(1, ids.unsqueeze(1)).sum())
