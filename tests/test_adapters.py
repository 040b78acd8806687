"""The adapter families: lengths, batching, the CIF and CTC mechanics against
independent references, and a short training run each."""

from __future__ import annotations

import itertools
import math
from typing import get_args

import pytest
import torch
from fairseq2.nn import BatchLayout
from torch import Tensor

from speechmapper_plugin.losses import (
    cif_quantity_loss,
    ctc_head_loss,
    embedding_mse_loss,
)
from speechmapper_plugin.models.adapters import (
    ADAPTER_KIND_REGISTRY,
    ADAPTER_KINDS,
    AdapterAux,
    AdapterConfig,
    AdapterKind,
    AlignmentTargets,
    SpeechAdapter,
    VariableLengthError,
    adapter_kind,
    create_speech_adapter_model,
    forced_align,
    integrate_and_fire,
)
from speechmapper_plugin.models.adapters.config import _tiny
from speechmapper_plugin.models.adapters.ctc import CTCCompressionLengthAdapter
from speechmapper_plugin.models.projector_base import ProjectorInputTooShortError

FIXED = ("base", "conv", "wlq_former", "qformer")
VARIABLE = ("cif", "ctc_compression")


def tiny(kind: str, **kwargs: int) -> SpeechAdapter:
    torch.manual_seed(0)
    config = _tiny(kind, **kwargs)  # type: ignore[arg-type]
    assert not config.validate().has_error(), config.validate()
    return create_speech_adapter_model(config).eval()


def run(
    model: SpeechAdapter, rows: list[Tensor], *, pre_averaged: bool = False
) -> tuple[Tensor, list[int], AdapterAux]:
    seqs = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    aux = AdapterAux()
    with torch.no_grad():
        out, layout = model(
            seqs,
            BatchLayout.of(seqs, [len(r) for r in rows]),
            pre_averaged=pre_averaged,
            aux=aux,
        )
    return out, list(layout.seq_lens), aux


@pytest.mark.parametrize("kind", FIXED)
def test_fixed_rate_lengths_are_exact_for_1_to_1000_frames(kind: str) -> None:
    """The length formula against the shapes the layers really produce, one
    input at a time (no padding involved), and against the batched layout."""
    model = tiny(kind)
    gen = torch.Generator().manual_seed(1)
    shortest = None
    for length in range(1, 1001):
        x = torch.randn(1, length, 64, generator=gen)
        predicted = int(model.output_lengths(torch.tensor([length]))[0])
        if predicted == 0:
            with pytest.raises(ProjectorInputTooShortError):
                model(x, BatchLayout.of(x))
            continue
        shortest = shortest or length
        with torch.no_grad():
            out, layout = model(x, BatchLayout.of(x))
        assert out.size(1) == predicted == layout.seq_lens[0], length
    assert shortest is not None


@pytest.mark.parametrize("kind", VARIABLE)
def test_variable_lengths_match_an_independent_count(kind: str) -> None:
    """For every length 1..1000 (frames, 2:1 averaging), the reported length
    equals what the adapter's own decisions imply, counted independently:
    CTC runs of the greedy predictions without blanks, CIF fires from the sum
    of its weights (one per whole threshold, plus a remainder >= 0.5)."""
    model = tiny(kind)
    gen = torch.Generator().manual_seed(2)
    lengths = list(range(1, 1001))
    with pytest.raises(VariableLengthError):
        model.output_lengths(torch.tensor([10]))
    for start in range(0, len(lengths), 50):
        chunk = lengths[start : start + 50]
        rows = [torch.randn(n, 64, generator=gen) for n in chunk]
        too_short = [n for n in chunk if n < 2]
        if too_short:
            with pytest.raises(ProjectorInputTooShortError):
                run(model, rows)
            rows = [r for r in rows if len(r) >= 2]
        out, lens, aux = run(model, rows)
        bounds = model.max_output_lengths(torch.tensor([len(r) for r in rows]))
        for i, row in enumerate(rows):
            frames = len(row) // 2
            if kind == "ctc_compression":
                assert aux.ctc_log_probs is not None
                preds = aux.ctc_log_probs[i, :frames].argmax(-1).tolist()
                blank = aux.ctc_log_probs.size(-1) - 1
                expected = sum(1 for p, _ in itertools.groupby(preds) if p != blank)
                expected = max(expected, 1)
            else:
                assert aux.weight_sums is not None
                total = float(aux.weight_sums[i])
                whole = math.floor(total + 1e-4)
                expected = whole + (1 if total - whole >= 0.5 else 0)
                expected = max(expected, 1)
            assert lens[i] == expected, (len(row), lens[i], expected)
            assert 1 <= lens[i] <= int(bounds[i])
        assert out.size(1) == max(lens)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_batched_equals_one_by_one_on_valid_positions(kind: str) -> None:
    model = tiny(kind)
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randn(n, 64, generator=gen) for n in (57, 9, 33, 2, 120)]
    out, lens, _ = run(model, rows)
    for i, row in enumerate(rows):
        single, single_lens, _ = run(model, [row])
        assert lens[i] == single_lens[0]
        torch.testing.assert_close(
            out[i, : lens[i]], single[0, : lens[i]], atol=1e-5, rtol=1e-4
        )


def test_padding_values_never_reach_valid_positions() -> None:
    for kind in ADAPTER_KINDS:
        model = tiny(kind)
        rows = [torch.randn(40, 64), torch.randn(11, 64)]
        seqs = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        poisoned = seqs.clone()
        poisoned[1, 11:] = 1e6
        with torch.no_grad():
            a, la = model(seqs, BatchLayout.of(seqs, [40, 11]))
            b, lb = model(poisoned, BatchLayout.of(poisoned, [40, 11]))
        n = lb.seq_lens[1]
        assert la.seq_lens == lb.seq_lens
        torch.testing.assert_close(a[1, :n], b[1, :n]), kind


def test_bad_input_is_refused_with_a_clear_error() -> None:
    model = tiny("conv")
    x = torch.randn(1, 5, 32)
    with pytest.raises(ValueError, match="must be \\[batch, frames, 64\\]"):
        model(x, BatchLayout.of(x))
    y = torch.randn(1, 40_000, 64)
    with pytest.raises(ValueError, match="max_input_frames"):
        model(y, BatchLayout.of(y))
    z = torch.randn(1, 8, 64)
    with pytest.raises(ValueError, match="only apply to variable-length"):
        model(
            z,
            BatchLayout.of(z),
            targets=AlignmentTargets(torch.ones(1, 2), torch.tensor([2])),
        )
    with pytest.raises(ProjectorInputTooShortError, match="at least 2 frames"):
        tiny("base")(torch.randn(1, 1, 64), BatchLayout.of(torch.randn(1, 1, 64)))


def test_configs_refuse_bad_values() -> None:
    assert AdapterConfig(kind="cif", num_pre_layers=0).validate().has_error()
    assert AdapterConfig(kind="bogus").validate().has_error()  # type: ignore[arg-type]
    assert AdapterConfig(model_dim=100, num_attn_heads=16).validate().has_error()
    assert AdapterConfig(cif_kernel_size=4).validate().has_error()
    assert not AdapterConfig().validate().has_error()


def test_every_kind_has_one_entry_and_one_typed_name() -> None:
    # The `AdapterKind` Literal is for type checkers; the registry is the list.
    assert set(get_args(AdapterKind)) == set(ADAPTER_KIND_REGISTRY)
    assert ADAPTER_KINDS == tuple(ADAPTER_KIND_REGISTRY)
    variable = {k for k, e in ADAPTER_KIND_REGISTRY.items() if e.variable_length}
    assert variable == set(VARIABLE)
    assert set(FIXED) | variable == set(ADAPTER_KINDS)
    for kind in ADAPTER_KINDS:
        assert AdapterConfig(kind=kind).variable_length == (kind in VARIABLE)


def test_only_ctc_compression_needs_the_llm_vocabulary() -> None:
    for kind in ADAPTER_KINDS:
        config = AdapterConfig(kind=kind, ctc_vocab_size=300)
        adapter_kind(kind).check_llm_vocabulary(config, 300, "llm")
        if kind == "ctc_compression":
            with pytest.raises(ValueError, match="ctc_vocab_size: 256"):
                adapter_kind(kind).check_llm_vocabulary(config, 256, "llm")
        else:
            adapter_kind(kind).check_llm_vocabulary(config, 256, "llm")


def reference_cif(alphas: list[float], frames: list[float]) -> list[float]:
    """A scalar, frame-at-a-time integrate-and-fire (1-d frames)."""
    out, acc, acc_h = [], 0.0, 0.0
    for a, h in zip(alphas, frames, strict=True):
        while acc + a >= 1.0 - 1e-4:
            need = 1.0 - acc
            out.append(acc_h + need * h)
            a -= min(need, a)
            acc, acc_h = 0.0, 0.0
        acc += a
        acc_h += a * h
    if acc >= 0.5 or not out:
        out.append(acc_h)
    return out


def test_integrate_and_fire_matches_a_scalar_reference() -> None:
    gen = torch.Generator().manual_seed(4)
    for length in (1, 2, 7, 30):
        alphas = torch.rand(1, length, generator=gen) * 1.8  # some above 1
        frames = torch.randn(1, length, 1, generator=gen)
        out, lens = integrate_and_fire(frames, alphas, torch.tensor([length]))
        expected = reference_cif(alphas[0].tolist(), frames[0, :, 0].tolist())
        assert int(lens[0]) == len(expected)
        torch.testing.assert_close(
            out[0, : len(expected), 0], torch.tensor(expected), atol=1e-5, rtol=1e-5
        )


def test_scaled_cif_fires_once_per_target_token() -> None:
    model = tiny("cif")
    x = torch.randn(3, 30, 64)
    lens = torch.tensor([30, 21, 9])
    targets = AlignmentTargets(
        torch.ones(3, 7, dtype=torch.int64), torch.tensor([7, 3, 9])
    )
    out, layout = model(
        x, BatchLayout.of(x, lens.tolist()), pre_averaged=True, targets=targets
    )
    assert layout.seq_lens == [7, 3, 9]


def best_path_bruteforce(
    log_probs: Tensor, target: list[int], blank: int
) -> list[int] | None:
    """Every CTC path of the frames, the best one that collapses to ``target``."""
    width, classes = log_probs.shape
    best, best_path = -math.inf, None
    for path in itertools.product(range(classes), repeat=width):
        collapsed = [p for p, _ in itertools.groupby(path) if p != blank]
        if collapsed != target:
            continue
        score = sum(float(log_probs[t, p]) for t, p in enumerate(path))
        if score > best:
            best, best_path = score, list(path)
    return best_path


def positions_of(path: list[int], blank: int) -> list[int]:
    """Token position of each frame of a CTC path (-1: blank)."""
    out, index, previous = [], -1, blank
    for p in path:
        if p != blank and p != previous:
            index += 1
        out.append(index if p != blank else -1)
        previous = p
    return out


def test_forced_alignment_is_the_best_ctc_path() -> None:
    gen = torch.Generator().manual_seed(5)
    blank = 3
    cases = [([0, 1], 5), ([2, 2], 5), ([1], 1), ([0, 1, 0], 6), ([2, 2, 2], 4)]
    log_probs = torch.randn(len(cases), 6, 4, generator=gen).log_softmax(-1)
    targets = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(t) for t, _ in cases], batch_first=True
    )
    target_lens = torch.tensor([len(t) for t, _ in cases])
    seq_lens = torch.tensor([n for _, n in cases])
    positions, aligned = forced_align(log_probs, seq_lens, targets, target_lens, blank)
    for i, (target, frames) in enumerate(cases):
        path = best_path_bruteforce(log_probs[i, :frames], target, blank)
        if path is None:  # [2, 2, 2] needs 5 frames
            assert not bool(aligned[i])
            assert sorted(set(positions[i, :frames].tolist())) == [0, 1, 2]
            continue
        assert bool(aligned[i])
        assert positions[i, :frames].tolist() == positions_of(path, blank)
        assert (positions[i, frames:] == -1).all()


def test_ctc_compression_with_targets_emits_one_output_per_token() -> None:
    model = tiny("ctc_compression")
    x = torch.randn(2, 20, 64)
    targets = AlignmentTargets(
        torch.tensor([[5, 6, 6], [7, 0, 0]]), torch.tensor([3, 1])
    )
    aux = AdapterAux()
    out, layout = model(
        x, BatchLayout.of(x, [20, 12]), pre_averaged=True, targets=targets, aux=aux
    )
    assert layout.seq_lens == [3, 1]
    assert aux.num_unaligned == 0


def rigged_ctc_compression(merge: str) -> CTCCompressionLengthAdapter:
    """A 4-d CTC compression whose head predicts the largest feature (labels
    a=0, b=1, c=2, blank=3): frames ``t * e_label`` carry their label."""
    adapter = CTCCompressionLengthAdapter(4, 3, merge=merge)  # type: ignore[arg-type]
    with torch.no_grad():
        adapter.head.weight.copy_(10.0 * torch.eye(4))
        assert adapter.head.bias is not None
        adapter.head.bias.zero_()
    return adapter


def labelled_frames(labels: list[int], width: int) -> Tensor:
    """Frame t (from 1) is ``t * e_label``; padding frames are ``100 * e_c``."""
    frames = torch.zeros(width, 4)
    frames[len(labels) :, 2] = 100.0
    for t, label in enumerate(labels):
        frames[t, label] = float(t + 1)
    return frames


@pytest.mark.parametrize(
    ("merge", "expected_lens", "expected_rows"),
    [
        # a a ∅ ∅ b b b -> (1+2)/2 e_a, (3+4)/2 e_∅, (5+6+7)/3 e_b;
        # b b ∅ -> (1+2)/2 e_b, 3 e_∅.
        ("average", [3, 2], [[(0, 1.5), (3, 3.5), (1, 6.0)], [(1, 1.5), (3, 3.0)]]),
        # Gaido et al.'s merge without the blank runs.
        ("drop_blanks", [2, 1], [[(0, 1.5), (1, 6.0)], [(1, 1.5)]]),
    ],
)
def test_ctc_merges_on_hand_worked_labels(
    merge: str, expected_lens: list[int], expected_rows: list[list[tuple[int, float]]]
) -> None:
    adapter = rigged_ctc_compression(merge)
    a, b, blank = 0, 1, 3
    seqs = torch.stack(
        [
            labelled_frames([a, a, blank, blank, b, b, b], 7),
            labelled_frames([b, b, blank], 7),  # 4 padding frames
        ]
    )
    out, lens = adapter(seqs, torch.tensor([7, 3]))
    assert lens.tolist() == expected_lens
    assert out.size(1) == max(expected_lens)
    for i, row in enumerate(expected_rows):
        expected = torch.zeros(len(row), 4)
        for j, (label, value) in enumerate(row):
            expected[j, label] = value
        assert torch.allclose(out[i, : len(row)], expected), (merge, i, out[i])


def test_ctc_average_keeps_an_all_blank_row_as_one_output() -> None:
    """Both merges give an all-blank row the mean of its frames."""
    for merge in ("average", "drop_blanks"):
        out, lens = rigged_ctc_compression(merge)(
            labelled_frames([3, 3, 3], 3).unsqueeze(0), torch.tensor([3])
        )
        assert lens.tolist() == [1]
        assert torch.allclose(out[0, 0], torch.tensor([0.0, 0.0, 0.0, 2.0]))


def test_ctc_merge_reaches_the_adapter_and_is_checked() -> None:
    """``ctc_merge: average`` counts every greedy run, blank runs included (an
    independent count from the head's predictions), and keeps per-token
    training at one output per token."""
    model = tiny("ctc_compression", ctc_merge="average")  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randn(n, 64, generator=gen) for n in (40, 23, 9)]
    _, lens, aux = run(model, rows, pre_averaged=True)
    assert aux.ctc_log_probs is not None
    for i, row in enumerate(rows):
        preds = aux.ctc_log_probs[i, : len(row)].argmax(-1).tolist()
        assert lens[i] == len(list(itertools.groupby(preds)))
    targets = AlignmentTargets(
        torch.tensor([[5, 6, 6], [7, 0, 0]]), torch.tensor([3, 1])
    )
    x = torch.randn(2, 20, 64, generator=gen)
    _, layout = model(
        x, BatchLayout.of(x, [20, 12]), pre_averaged=True, targets=targets
    )
    assert layout.seq_lens == [3, 1]
    assert AdapterConfig(ctc_merge="sum").validate().has_error()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop_blanks, average"):
        CTCCompressionLengthAdapter(4, 3, merge="sum")  # type: ignore[arg-type]


def synthetic_batch(
    gen: torch.Generator, prototypes: Tensor, num_rows: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Utterances of 2-5 tokens; each token is 4-6 noisy frames of its prototype."""
    rows, ids = [], []
    for _ in range(num_rows):
        tokens = torch.randint(
            0,
            prototypes.size(0),
            (int(torch.randint(2, 6, (1,), generator=gen)),),
            generator=gen,
        )
        frames = []
        for tok in tokens.tolist():
            repeat = int(torch.randint(4, 7, (1,), generator=gen))
            frames.append(
                prototypes[tok].expand(repeat, -1)
                + 0.1 * torch.randn(repeat, prototypes.size(1), generator=gen)
            )
        rows.append(torch.cat(frames))
        ids.append(tokens)
    seqs = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    seq_lens = torch.tensor([len(r) for r in rows])
    target_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    target_lens = torch.tensor([len(t) for t in ids])
    return seqs, seq_lens, target_ids, target_lens


def stage1_like_loss(
    model: SpeechAdapter,
    batch: tuple[Tensor, Tensor, Tensor, Tensor],
    table: Tensor,
    pad_idx: int,
) -> Tensor:
    seqs, seq_lens, ids, lens = batch
    layout = BatchLayout.of(seqs, seq_lens.tolist())
    aux = AdapterAux()
    if model.variable_length:
        out, out_layout = model(
            seqs,
            layout,
            pre_averaged=True,
            targets=AlignmentTargets(ids, lens),
            aux=aux,
        )
    else:
        out, out_layout = model(seqs, layout, pre_averaged=True)
    mse = embedding_mse_loss(
        out,
        out_layout.seq_lens_pt,
        table[ids],
        lens,
        table[pad_idx],
        alpha=10.0 if model.variable_length else 9.0,
    ).total
    if aux.weight_sums is not None:
        mse = mse + cif_quantity_loss(aux.weight_sums, lens)
    if aux.ctc_log_probs is not None and aux.ctc_lens is not None:
        mse = (
            mse
            + ctc_head_loss(
                aux.ctc_log_probs,
                aux.ctc_lens,
                ids,
                lens,
                blank=aux.ctc_log_probs.size(-1) - 1,
            ).total
        )
    return mse


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_200_steps_lower_the_loss_tenfold_and_generalise(kind: str) -> None:
    """Training on synthetic speech (token prototypes held for 4-6 frames)
    lowers the stage-1 loss >= 10x; on held-out utterances the trained
    adapter beats its untrained self."""
    torch.manual_seed(6)
    gen = torch.Generator().manual_seed(6)
    vocab = 12
    prototypes = torch.randn(vocab, 64, generator=gen)
    table = torch.randn(vocab + 1, 64, generator=gen)  # the last row is the pad
    pad_idx = vocab
    model = tiny(kind, ctc_vocab_size=vocab + 1).train()
    train = synthetic_batch(gen, prototypes, 16)
    held_out = synthetic_batch(gen, prototypes, 16)

    with torch.no_grad():
        held_out_before = float(stage1_like_loss(model, held_out, table, pad_idx))

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(200):
        loss = stage1_like_loss(model, train, table, pad_idx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    with torch.no_grad():
        held_out_after = float(stage1_like_loss(model, held_out, table, pad_idx))

    assert losses[0] >= 10 * min(losses[-5:]), (losses[0], losses[-5:])
    assert held_out_after < held_out_before, (held_out_before, held_out_after)
