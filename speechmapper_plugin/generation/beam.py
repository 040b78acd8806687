"""Beam search from prompt embeddings.

The fairseq scheme, made independent of the rest of the batch: every example
owns ``beam_size`` rows; at each step its candidates (``beam_size x V``) are
ranked by cumulative log-probability. Candidates among the top ``beam_size``
that end the hypothesis (a stop token, or a token that completes a loop for the
repetition guard) are moved to the example's finished list; the best
``beam_size`` candidates that do not end it continue. An example is done when it
has ``beam_size`` finished hypotheses or reaches its token budget (its live
beams then finish with ``stop_reason="max_length"``).

While an example is still reading its prompt (with left-aligned prompts,
longer ones are fed position by position, see
:mod:`~speechmapper_plugin.generation.decoder`) its rows are identical copies and only the first one carries a finite score, so the first
generated step expands exactly one beam.
"""

from __future__ import annotations

import torch
from fairseq2.error import InternalError
from fairseq2.models.transformer_lm import TransformerLM
from torch import Tensor

from speechmapper_plugin.generation.config import GenerationConfig
from speechmapper_plugin.generation.hypothesis import (
    GenerationResult,
    Hypothesis,
    StopReason,
)
from speechmapper_plugin.generation.inputs import (
    GenerationInputs,
)
from speechmapper_plugin.generation.repetition import (
    completion_mask,
    find_repetition_loop,
    loop_completions,
)
from speechmapper_plugin.generation.state import (
    make_hypothesis,
    next_log_probs,
    start_search,
)


class BeamSearch:
    """Beam search with ``config.beam_size`` beams over validated inputs."""

    def __init__(
        self, model: TransformerLM, inputs: GenerationInputs, config: GenerationConfig
    ) -> None:
        self._inputs = inputs
        self._config = config
        self._beam_size = config.beam_size
        self._periods = config.repetition_guard.periods()
        self._decoder, self._state = start_search(
            model, inputs, beam_size=config.beam_size
        )

        device = inputs.embeds.device
        batch_size = len(inputs.prompt_lens)

        self._stop_mask = inputs.stop_mask

        # Only the first copy of each example is live until its prompt ends.
        scores = torch.full((batch_size, self._beam_size), -torch.inf, device=device)
        scores[:, 0] = 0.0
        self._scores = scores.flatten()

        self._finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]

    def run(self) -> list[GenerationResult]:
        while self._state.examples:
            self._step()

        results = []
        for example, finished in enumerate(self._finished):
            if not finished:
                raise InternalError(f"Example {example} has no hypothesis.")
            ranked = sorted(finished, key=lambda h: h.score, reverse=True)
            results.append(
                GenerationResult(
                    hypotheses=ranked[: self._beam_size],
                    prompt_len=self._inputs.prompt_lens[example],
                    max_new_tokens=self._inputs.budgets[example],
                )
            )
        return results

    def _step(self) -> None:
        state = self._state
        beam_size = self._beam_size
        vocab_size = self._inputs.vocab_size

        logits = state.feed_next(self._decoder)

        # The position the logits predict; examples whose prompt is longer
        # ignore them and keep their rows as they are.
        position = self._decoder.position

        num_examples = len(state.examples)

        num_generated = position - state.row_prompt_ends
        generating = state.prompt_ends <= position  # [A]

        lprobs = next_log_probs(logits, num_generated, self._stop_mask, self._config)

        ends = self._stop_mask.expand(lprobs.shape)
        completions: Tensor | None = None
        if self._periods:
            completions = loop_completions(
                state.seqs, num_generated, position, self._periods
            )
            ends = ends | completion_mask(completions, vocab_size)

        # [A, K * V] cumulative scores of every candidate of each example.
        candidates = (self._scores.unsqueeze(1) + lprobs).view(num_examples, -1)
        ends = ends.reshape(num_examples, -1)

        top_scores, top_indices = candidates.topk(beam_size, dim=1)
        top_ends = ends.gather(1, top_indices) & top_scores.isfinite()
        top_ends &= generating.unsqueeze(1)

        next_scores, next_indices = candidates.masked_fill(ends, -torch.inf).topk(
            beam_size, dim=1
        )

        offsets = torch.arange(num_examples, device=lprobs.device).unsqueeze(1)
        offsets = offsets * beam_size

        # Examples still reading their prompt keep their rows.
        same_rows = offsets + torch.arange(beam_size, device=lprobs.device)
        next_rows = torch.where(
            generating.unsqueeze(1),
            offsets + torch.div(next_indices, vocab_size, rounding_mode="floor"),
            same_rows,
        )
        next_tokens = next_indices % vocab_size
        next_scores = torch.where(
            generating.unsqueeze(1), next_scores, self._scores.view(num_examples, -1)
        )

        reached = generating & (position - state.prompt_ends + 1 >= state.budgets)
        no_live_beam = generating & ~next_scores.isfinite().any(dim=1)

        needs_attention = top_ends.any(dim=1) | reached | no_live_beam
        done: set[int] = set()

        for index in needs_attention.nonzero().flatten().tolist():
            if self._finish_ends(index, position, top_ends, top_indices, lprobs):
                done.add(index)
                continue

            if bool(reached[index]):
                self._finish_budget(
                    index, position, next_rows, next_tokens, next_scores, lprobs
                )
                done.add(index)
            elif bool(no_live_beam[index]):
                done.add(index)

        next_order = next_rows.flatten()
        flat_tokens = next_tokens.flatten()
        flat_lprobs = lprobs[next_order, flat_tokens]
        generating_rows = generating.repeat_interleave(beam_size)

        state.reorder_rows(next_order)
        state.seqs[:, position] = torch.where(generating_rows, flat_tokens, -1)
        state.token_log_probs[:, position] = torch.where(
            generating_rows, flat_lprobs, 0.0
        )
        self._scores = next_scores.flatten()

        if done:
            keep = [i for i in range(num_examples) if i not in done]
            kept_rows = state.keep_examples(keep)
            state.reorder_rows(kept_rows)
            self._scores = self._scores.index_select(0, kept_rows)
            next_order = next_order.index_select(0, kept_rows)

        if state.examples:
            self._decoder.reorder(next_order)

    def _finish_ends(
        self,
        index: int,
        position: int,
        top_ends: Tensor,
        top_indices: Tensor,
        lprobs: Tensor,
    ) -> bool:
        """Finish example ``index``'s ending top candidates; ``True`` if it is done."""
        example = self._state.examples[index]
        vocab_size = self._inputs.vocab_size

        flags = top_ends[index].tolist()
        indices = top_indices[index].tolist()

        for ends, flat_index in zip(flags, indices, strict=True):
            if not ends:
                continue

            beam, token = divmod(flat_index, vocab_size)
            row = index * self._beam_size + beam
            self._finish_row(example, row, position, token, float(lprobs[row, token]))

            if len(self._finished[example]) >= self._beam_size:
                return True

        return False

    def _finish_budget(
        self,
        index: int,
        position: int,
        next_rows: Tensor,
        next_tokens: Tensor,
        next_scores: Tensor,
        lprobs: Tensor,
    ) -> None:
        """Finish example ``index``'s live beams at the end of its token budget."""
        example = self._state.examples[index]

        for row, token, score in zip(
            next_rows[index].tolist(),
            next_tokens[index].tolist(),
            next_scores[index].tolist(),
            strict=True,
        ):
            if score == -float("inf"):
                continue  # a dead beam (only when the vocabulary is tiny)

            token_lprob = float(lprobs[row, token])
            tokens, token_lprobs = self._state.generated(row, position)
            tokens.append(token)
            token_lprobs.append(token_lprob)

            reason: StopReason = "max_length"
            hypothesis = make_hypothesis(tokens, token_lprobs, reason, self._config)
            self._finished[example].append(hypothesis)

    def _finish_row(
        self, example: int, row: int, position: int, token: int, token_lprob: float
    ) -> None:
        """Finish the hypothesis of ``row`` extended by ``token`` (a stop or loop token)."""
        tokens, token_lprobs = self._state.generated(row, position)

        if bool(self._stop_mask[token]):
            hypothesis = make_hypothesis(
                tokens,
                token_lprobs,
                "eos",
                self._config,
                stop_token_id=token,
                stop_log_prob=token_lprob,
            )
        else:
            tokens.append(token)
            token_lprobs.append(token_lprob)
            loop = find_repetition_loop(tokens, self._config.repetition_guard)
            if loop is None:
                raise InternalError(f"Row {row} ended on a token that ends nothing.")
            hypothesis = make_hypothesis(
                tokens, token_lprobs, "repetition", self._config, loop=loop
            )

        self._finished[example].append(hypothesis)
