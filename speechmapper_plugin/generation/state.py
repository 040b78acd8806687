"""Bookkeeping shared by greedy and beam search.

Rows are grouped by example (``beam_size`` consecutive rows each); every row
sits at the same sequence position, so generated tokens are stored at their
absolute position in ``seqs`` and each example's generated part starts where
its prompt ends: at the same position for all when the prompts are
right-aligned, at each one's own length when they are left-aligned (see
:mod:`~speechmapper_plugin.generation.decoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from fairseq2.models.transformer_lm import TransformerLM
from torch import Tensor
from torch.nn.functional import log_softmax

from speechmapper_plugin.generation.config import GenerationConfig
from speechmapper_plugin.generation.decoder import EmbeddingDecoder, right_aligned
from speechmapper_plugin.generation.hypothesis import (
    Hypothesis,
    RepetitionLoop,
    StopReason,
)
from speechmapper_plugin.generation.inputs import GenerationInputs


@dataclass
class SearchState:
    """The active examples and the per-row token history."""

    beam_size: int

    examples: list[int]
    """The indices (in the input batch) of the examples still decoding."""

    prompts: Tensor
    """``[B, W, D]`` the prompts as fed (right- or left-aligned)."""

    prompt_ends: Tensor
    """``[A]`` int64, the position of each active example's first new token."""

    budgets: Tensor
    """``[A]`` int64, the maximum number of new tokens per active example."""

    seqs: Tensor
    """``[A * beam_size, T]`` int64 generated tokens at their positions; -1 elsewhere."""

    token_log_probs: Tensor
    """``[A * beam_size, T]`` float32 log-probabilities of the tokens in ``seqs``."""

    @staticmethod
    def start(
        inputs: GenerationInputs,
        beam_size: int,
        prompts: Tensor,
        prompt_ends: list[int],
        total_len: int,
    ) -> SearchState:
        device = inputs.embeds.device
        batch_size = len(inputs.prompt_lens)
        num_rows = batch_size * beam_size
        return SearchState(
            beam_size=beam_size,
            examples=list(range(batch_size)),
            prompts=prompts,
            prompt_ends=torch.tensor(prompt_ends, device=device),
            budgets=torch.tensor(inputs.budgets, device=device),
            seqs=torch.full(
                (num_rows, total_len), -1, dtype=torch.int64, device=device
            ),
            token_log_probs=torch.zeros(
                (num_rows, total_len), dtype=torch.float32, device=device
            ),
        )

    @property
    def row_prompt_ends(self) -> Tensor:
        """``[A * beam_size]`` the position of each row's first new token."""
        return self.prompt_ends.repeat_interleave(self.beam_size)

    def keep_examples(self, keep: list[int]) -> Tensor:
        """Drop all but the active examples at indices ``keep``; returns their row order."""
        device = self.seqs.device
        keep_pt = torch.tensor(keep, dtype=torch.int64, device=device)
        self.examples = [self.examples[i] for i in keep]
        self.prompt_ends = self.prompt_ends.index_select(0, keep_pt)
        self.budgets = self.budgets.index_select(0, keep_pt)
        offsets = torch.arange(self.beam_size, device=device)
        return (keep_pt.unsqueeze(1) * self.beam_size + offsets).flatten()

    def feed_next(self, decoder: EmbeddingDecoder) -> Tensor:
        """Feed the next position(s) and return the logits predicting the one after.

        While every active row is still inside its prompt, the prompts' common
        part is fed in one call (all of them when right-aligned; with
        left-aligned prompts the prefill, or a catch-up after the shorter
        examples finished); otherwise one position: the prompt embedding for
        rows still reading their prompt, the last generated token for the rest.
        """
        prompts = self.prompts
        position = decoder.position
        example_rows = torch.tensor(self.examples, device=prompts.device)
        example_rows = example_rows.repeat_interleave(self.beam_size)

        common_len = int(self.prompt_ends.min())
        if common_len > position:
            chunk = prompts[:, position:common_len].index_select(0, example_rows)
            return decoder.feed(chunk)

        step_embeds = decoder.embed_tokens(self.seqs[:, position].clamp(min=0))
        if position < prompts.size(1):  # some prompts may still be read
            prompt_embeds = prompts[:, position : position + 1]
            prompt_embeds = prompt_embeds.index_select(0, example_rows)
            in_prompt = (self.row_prompt_ends > position).view(-1, 1, 1)
            step_embeds = torch.where(in_prompt, prompt_embeds, step_embeds)
        return decoder.feed(step_embeds)

    def reorder_rows(self, new_order: Tensor) -> None:
        self.seqs = self.seqs.index_select(0, new_order)
        self.token_log_probs = self.token_log_probs.index_select(0, new_order)

    def generated(self, row: int, end: int) -> tuple[list[int], list[float]]:
        """Row ``row``'s generated tokens and log-probabilities before position ``end``."""
        start = int(self.prompt_ends[row // self.beam_size])
        tokens = self.seqs[row, start:end].tolist()
        log_probs = self.token_log_probs[row, start:end].tolist()
        return tokens, log_probs


def start_search(
    model: TransformerLM, inputs: GenerationInputs, beam_size: int
) -> tuple[EmbeddingDecoder, SearchState]:
    """The decoder and the state of a search with ``beam_size`` rows per example.

    Prompts of different lengths are right-aligned, so that one forward pass
    reads them all, where the model's attention takes a per-row mask and the
    longest prompt plus the largest budget fits ``model.max_seq_len`` (RoPE
    shifts row ``i``'s positions by its padding); otherwise left-aligned.
    """
    lens = inputs.prompt_lens
    width = max(lens)
    aligned_len = width + max(inputs.budgets)
    if (
        min(lens) < width
        and aligned_len <= model.max_seq_len
        and EmbeddingDecoder.takes_row_starts(model)
    ):
        starts = torch.tensor([width - n for n in lens], device=inputs.embeds.device)
        decoder = EmbeddingDecoder(
            model, aligned_len, row_starts=starts.repeat_interleave(beam_size)
        )
        prompts = right_aligned(inputs.embeds, lens)
        ends = [width] * len(lens)
        return decoder, SearchState.start(inputs, beam_size, prompts, ends, aligned_len)

    decoder = EmbeddingDecoder(model, inputs.total_len)
    state = SearchState.start(
        inputs, beam_size, inputs.embeds, list(lens), inputs.total_len
    )
    return decoder, state


def make_hypothesis(
    tokens: list[int],
    token_log_probs: list[float],
    stop_reason: StopReason,
    config: GenerationConfig,
    *,
    stop_token_id: int | None = None,
    stop_log_prob: float = 0.0,
    loop: RepetitionLoop | None = None,
) -> Hypothesis:
    """A finished hypothesis with its log-probability and ranking score."""
    log_prob = sum(token_log_probs)
    num_scored = len(tokens)
    if stop_reason == "eos":
        log_prob += stop_log_prob
        num_scored += 1

    score = log_prob
    if config.normalize_scores and num_scored > 0:
        score = log_prob / num_scored**config.len_penalty

    return Hypothesis(
        tokens=tokens,
        token_log_probs=token_log_probs,
        log_prob=log_prob,
        score=score,
        stop_reason=stop_reason,
        stop_token_id=stop_token_id,
        loop=loop,
    )


def next_log_probs(
    logits: Tensor, num_generated: Tensor, stop_mask: Tensor, config: GenerationConfig
) -> Tensor:
    """``[N, V]`` float32 log-probabilities of the next token of each row:
    the logits at ``config.temperature``, stop tokens blocked for rows that
    have generated fewer than ``config.min_gen_len - 1`` tokens."""
    if config.temperature != 1.0:
        logits = logits / config.temperature

    lprobs = log_softmax(logits, dim=-1, dtype=torch.float32)

    if config.min_gen_len > 1:
        blocked = num_generated < config.min_gen_len - 1
        lprobs.masked_fill_(blocked.unsqueeze(1) & stop_mask, -torch.inf)

    return lprobs
