"""The retarget experiment in small (issue 22): on a synthetic speech world,
stage 1 for a second LLM warm-started from the first LLM's projector beats
stage 1 from scratch at equal steps on held-out speakers, and a warm start
from an untrained projector (the control that moves weights without knowledge)
does not.

The world: each token is a feature pattern, spoken over a few frames through
a speaker's linear colouring plus noise; held-out utterances are other
sentences by speakers that training never heard. The two LLMs' embedding
tables are independent random tables of different widths, so nothing of the
first LLM's output space carries over: only the trunk's knowledge of the
speech does. Real parts throughout: the projector, the warm start
(:func:`load_fitting_tensors`), the stage-1 loss, AdamW under fairseq2's
cosine schedule (the quickstart's optimiser settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from statistics import mean

import pytest
import torch
from fairseq2.nn import BatchLayout
from fairseq2.optim.lr_schedulers import CosineAnnealingLR
from torch import Tensor

from speechmapper_plugin.losses import embedding_mse_loss
from speechmapper_plugin.metrics.intervals import Estimate, mean_estimate
from speechmapper_plugin.models.speechmapper import (
    ProjectorBlockConfig,
    SpeechMapperConfig,
    SpeechMapperProjector,
    create_speechmapper_model,
)
from speechmapper_plugin.models.warm_start import load_fitting_tensors

pytestmark = pytest.mark.slow

VOCAB = 24
FEATURE_DIM = 16
FRAMES_PER_TOKEN = 8
TOKENS_PER_UTTERANCE = (3, 6)
TRAIN_SPEAKERS, HELDOUT_SPEAKERS = 6, 3
NUM_TRAIN, NUM_HELDOUT = 384, 64
BATCH = 32
STEPS = 150
"""Stage-1 steps of each run for the second LLM."""
SOURCE_STEPS = 300
"""The first LLM's projector, trained further (a finished stage 1)."""


@dataclass(frozen=True)
class Split:
    features: Tensor
    """``[N, T, FEATURE_DIM]``, right-padded."""

    feature_lens: Tensor
    tokens: Tensor
    """``[N, S]`` token ids, right-padded with 0."""

    token_lens: Tensor


def speak(num: int, speakers: Tensor, codes: Tensor, gen: torch.Generator) -> Split:
    lens = torch.randint(*TOKENS_PER_UTTERANCE, (num,), generator=gen)
    longest = int(lens.max())
    tokens = torch.zeros(num, longest, dtype=torch.long)
    features = torch.zeros(num, longest * FRAMES_PER_TOKEN, FEATURE_DIM)
    for i, n in enumerate(lens.tolist()):
        ids = torch.randint(1, VOCAB, (n,), generator=gen)
        tokens[i, :n] = ids
        clean = codes[ids].repeat_interleave(FRAMES_PER_TOKEN, dim=0)
        colour = speakers[torch.randint(len(speakers), (), generator=gen)]
        noise = 0.3 * torch.randn(clean.shape, generator=gen)
        features[i, : len(clean)] = clean @ colour + noise
    return Split(features, lens * FRAMES_PER_TOKEN, tokens, lens)


def world() -> tuple[Split, Split]:
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(VOCAB, FEATURE_DIM, generator=gen)
    colours = torch.eye(FEATURE_DIM) + 0.1 * torch.randn(
        TRAIN_SPEAKERS + HELDOUT_SPEAKERS, FEATURE_DIM, FEATURE_DIM, generator=gen
    )
    train = speak(NUM_TRAIN, colours[:TRAIN_SPEAKERS], codes, gen)
    heldout = speak(NUM_HELDOUT, colours[TRAIN_SPEAKERS:], codes, gen)
    return train, heldout


def llm_table(width: int, seed: int) -> Tensor:
    """A random embedding table; row 0 is the pad token."""
    return torch.randn(VOCAB, width, generator=torch.Generator().manual_seed(seed))


def projector(output_dim: int, seed: int) -> SpeechMapperProjector:
    block = ProjectorBlockConfig(
        model_dim=32, output_dim=32, num_layers=1, num_attn_heads=4, ffn_inner_dim=64
    )
    config = SpeechMapperConfig(
        input_dim=FEATURE_DIM,
        blocks=[block, block],
        output_dim=output_dim,
        dropout_p=0.0,
    )
    torch.manual_seed(seed)
    return create_speechmapper_model(config)


def mse(
    model: SpeechMapperProjector, split: Split, table: Tensor, rows: slice
) -> Tensor:
    features = split.features[rows]
    layout = BatchLayout.of(features, split.feature_lens[rows].tolist())
    outputs, out_layout = model(features, layout, pre_averaged=True)
    return embedding_mse_loss(
        outputs,
        out_layout.seq_lens_pt,
        table[split.tokens[rows]],
        split.token_lens[rows],
        table[0],
    ).total


def train(
    model: SpeechMapperProjector,
    data: Split,
    table: Tensor,
    heldout: Split,
    eval_at: tuple[int, ...],
    steps: int = STEPS,
) -> dict[int, list[float]]:
    """Trains ``steps`` steps (the same batches for every run: seeded);
    returns the per-utterance held-out loss at each step of ``eval_at``."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=5e-3, betas=(0.9, 0.98), weight_decay=0.0
    )
    schedule = CosineAnnealingLR(
        optimizer, cycle_len=steps, num_warmup_steps=10, final_lr=5e-3 * 0.05
    )
    order = torch.Generator().manual_seed(1)
    scores: dict[int, list[float]] = {}
    for step in range(steps + 1):
        if step in eval_at:
            with torch.no_grad():
                scores[step] = [
                    float(mse(model, heldout, table, slice(i, i + 1)))
                    for i in range(NUM_HELDOUT)
                ]
        if step == steps:
            break
        rows = torch.randperm(NUM_TRAIN, generator=order)[:BATCH]
        sub = Split(
            data.features[rows],
            data.feature_lens[rows],
            data.tokens[rows],
            data.token_lens[rows],
        )
        mse(model, sub, table, slice(None)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
    return scores


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matrices: one thread does them in ~10 s of CPU; several spin
    against each other on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_retargeted_beats_from_scratch_at_equal_steps_on_heldout_speakers() -> None:
    train_split, heldout = world()
    first_llm, second_llm = llm_table(32, seed=1), llm_table(24, seed=2)

    source = projector(32, seed=3)
    train(source, train_split, first_llm, heldout, (), SOURCE_STEPS)
    untrained = projector(32, seed=4)

    checkpoints = (STEPS // 3, STEPS)
    runs = {}
    for name, origin in [
        ("scratch", None),
        ("retargeted", source),
        ("untrained_source", untrained),
    ]:
        model = projector(24, seed=5)
        if origin is not None:
            report = load_fitting_tensors(model, origin.state_dict())
            assert sorted(report.fresh) == ["final_proj.bias", "final_proj.weight"]
        runs[name] = train(model, train_split, second_llm, heldout, checkpoints)

    def gain(run: str, step: int) -> Estimate:
        """How much lower the held-out loss of ``run`` is than from scratch
        at ``step``: the mean paired difference over the n = NUM_HELDOUT
        held-out utterances, with its bootstrap interval."""
        diffs = [
            s - r for s, r in zip(runs["scratch"][step], runs[run][step], strict=True)
        ]
        estimate = mean_estimate(diffs)
        assert estimate.n == NUM_HELDOUT
        return estimate

    # At a third of the steps and at the end, the retargeted run is ahead.
    for step in checkpoints:
        assert gain("retargeted", step).low > 0.0, step
    # The target in small: by a third of the steps the retargeted run
    # is where the from-scratch run ends (measured: 0.46 at step 50, from
    # scratch 0.67 at step 50 and 0.49 at step 150).
    assert mean(runs["retargeted"][STEPS // 3]) <= mean(runs["scratch"][STEPS])
    # The control: a warm start from weights that know nothing is another
    # random init; its lead (if any: the paired interval covers the test
    # utterances, not the init) is far below the retargeted run's.
    for step in checkpoints:
        assert gain("untrained_source", step).high < gain("retargeted", step).low, step
