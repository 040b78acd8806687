"""One hypothesis per example: greedy decoding and sampling from prompt embeddings.

Both run the same loop; they differ in how the next token is chosen from the
step's distribution (its argmax, or a draw by one of fairseq2's samplers).
Greedy decoding gives beam search's tokens with one beam, and is kept as its
own path because it is measurably faster
(``benchmarks/bench_greedy_vs_beam.py``).

A caller can stop examples while they are generated (a server whose client
went away): after every step the loop asks its :data:`CancelCheck` about each
example still decoding, and a cancelled one leaves the batch at once, as a
finished one does, with the tokens it had and ``stop_reason="cancelled"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from fairseq2.error import InternalError
from fairseq2.generation.sampling import Sampler, TopKSampler, TopPSampler
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.config import TOP_K_SAMPLER
from torch import Tensor

from speechmapper_plugin.generation.config import GenerationConfig, SamplerSection
from speechmapper_plugin.generation.hypothesis import (
    GenerationResult,
    Hypothesis,
    StopReason,
)
from speechmapper_plugin.generation.inputs import (
    GenerationInputs,
)
from speechmapper_plugin.generation.repetition import (
    find_repetition_loop,
    loop_completions,
)
from speechmapper_plugin.generation.state import (
    make_hypothesis,
    next_log_probs,
    start_search,
)

TokenChooser = Callable[[Tensor], Tensor]
"""Picks one token per row (``[N]``) from ``[N, V]`` log-probabilities."""


@dataclass(frozen=True)
class DecodingStep:
    """What one step of greedy decoding or sampling added: what a streaming
    caller needs to show answers while they are generated."""

    examples: list[int]
    """The input-batch index of each row decoded at this step."""

    tokens: list[int | None]
    """The token each row added to its answer; ``None`` for a row still
    reading its prompt or ending on a stop token (not part of the answer)."""

    finished: list[int]
    """The input-batch indices of the examples whose answer is complete
    after this step (no token of theirs follows). An example cancelled after
    this step (see :data:`CancelCheck`) is not listed: it is simply absent
    from the next step."""


StepCallback = Callable[[DecodingStep], None]
"""Called after every decoding step (greedy and sampling; beam search cannot
tell which tokens stay before it ends, so it never calls it)."""

CancelCheck = Callable[[int], bool]
"""Whether the caller no longer wants example ``i``'s answer (input-batch
index). Asked after every step of greedy decoding or sampling (after the
:data:`StepCallback`, so the tokens a callback saw are exactly the cancelled
answer's), for each example still decoding; it may turn true from another
thread. Beam search never asks it: it runs to its end."""


def make_sampler(section: SamplerSection) -> Sampler:
    """fairseq2's sampler that ``section`` names (what fairseq2's recipe
    components build from the same configs)."""
    if section.name == TOP_K_SAMPLER:
        return TopKSampler(k=section.top_k.k)
    return TopPSampler(p=section.top_p.p)


def argmax(lprobs: Tensor) -> Tensor:
    """Greedy decoding's choice: the most likely token of each row."""
    return lprobs.argmax(dim=-1)


def sampled(section: SamplerSection) -> TokenChooser:
    """Sampling's choice: a draw by fairseq2's sampler that ``section`` names
    (from torch's global random generator)."""
    sampler = make_sampler(section)

    def choose(lprobs: Tensor) -> Tensor:
        return sampler.sample(lprobs.exp())

    return choose


class OneHypothesisSearch:
    """Keeps one hypothesis per example, extended by ``choose``'s token at
    every step: greedy decoding (:func:`argmax`) or sampling (:func:`sampled`)."""

    def __init__(
        self,
        model: TransformerLM,
        inputs: GenerationInputs,
        config: GenerationConfig,
        choose: TokenChooser,
        on_step: StepCallback | None = None,
        cancelled: CancelCheck | None = None,
    ) -> None:
        self._inputs = inputs
        self._on_step = on_step
        self._cancelled = cancelled
        self._config = config
        self._choose = choose
        self._periods = config.repetition_guard.periods()
        self._decoder, self._state = start_search(model, inputs, beam_size=1)

        self._stop_mask = inputs.stop_mask

        self._hypotheses: list[Hypothesis | None] = [None] * len(inputs.prompt_lens)

    def run(self) -> list[GenerationResult]:
        while self._state.examples:
            self._step()

        results = []
        for example, hypothesis in enumerate(self._hypotheses):
            if hypothesis is None:
                raise InternalError(f"Example {example} has no hypothesis.")
            results.append(
                GenerationResult(
                    hypotheses=[hypothesis],
                    prompt_len=self._inputs.prompt_lens[example],
                    max_new_tokens=self._inputs.budgets[example],
                )
            )
        return results

    def _step(self) -> None:
        state = self._state

        logits = state.feed_next(self._decoder)

        # The position the logits predict; rows whose prompt is longer ignore them.
        position = self._decoder.position

        num_generated = position - state.prompt_ends
        generating = num_generated >= 0

        lprobs = next_log_probs(logits, num_generated, self._stop_mask, self._config)

        tokens = self._choose(lprobs)
        token_lprobs = lprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)

        is_stop = generating & self._stop_mask[tokens]

        is_loop = torch.zeros_like(is_stop)
        if self._periods:
            completions = loop_completions(
                state.seqs, num_generated, position, self._periods
            )
            is_loop = (completions == tokens.unsqueeze(1)).any(dim=1)
            is_loop &= generating & ~is_stop

        keeps_token = generating & ~is_stop
        state.seqs[:, position] = torch.where(keeps_token, tokens, -1)
        state.token_log_probs[:, position] = torch.where(keeps_token, token_lprobs, 0.0)

        reached = generating & (num_generated + 1 >= state.budgets)

        finished = (is_stop | is_loop | reached).nonzero().flatten().tolist()

        if self._on_step is not None:
            kept = torch.where(keeps_token, tokens, -1).tolist()
            self._on_step(
                DecodingStep(
                    examples=list(state.examples),
                    tokens=[None if token < 0 else token for token in kept],
                    finished=[state.examples[i] for i in finished],
                )
            )

        stopped = set(finished)
        cancelled = self._cancelled_rows(stopped)
        if not stopped and not cancelled:
            return

        for index in finished:
            self._finish(
                index, position, int(tokens[index]), float(token_lprobs[index])
            )
        for index in cancelled:
            self._cancel(index, position)
        stopped.update(cancelled)

        keep = [i for i in range(len(state.examples)) if i not in stopped]

        new_order = state.keep_examples(keep)
        if state.examples:
            self._decoder.reorder(new_order)
            state.reorder_rows(new_order)

    def _cancelled_rows(self, finished: set[int]) -> list[int]:
        """The rows, not already ``finished``, whose example the caller cancelled."""
        if self._cancelled is None:
            return []
        return [
            index
            for index, example in enumerate(self._state.examples)
            if index not in finished and self._cancelled(example)
        ]

    def _cancel(self, index: int, position: int) -> None:
        """Row ``index`` ends with the tokens it has, this step's included
        (none for a row still reading its prompt)."""
        state = self._state
        tokens, lprobs = state.generated(index, position + 1)
        self._hypotheses[state.examples[index]] = make_hypothesis(
            tokens, lprobs, "cancelled", self._config
        )

    def _finish(
        self, index: int, position: int, token: int, token_lprob: float
    ) -> None:
        state = self._state
        example = state.examples[index]

        if bool(self._stop_mask[token]):
            tokens, lprobs = state.generated(index, position)
            hypothesis = make_hypothesis(
                tokens,
                lprobs,
                "eos",
                self._config,
                stop_token_id=token,
                stop_log_prob=token_lprob,
            )
        else:
            tokens, lprobs = state.generated(index, position + 1)
            loop = find_repetition_loop(tokens, self._config.repetition_guard)
            reason: StopReason = "repetition" if loop is not None else "max_length"
            hypothesis = make_hypothesis(
                tokens, lprobs, reason, self._config, loop=loop
            )

        self._hypotheses[example] = hypothesis
