"""The two SpeechMapper losses: values, masking, endpoints and gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechmapper_plugin.losses import (
    UntrainableRowsError,
    build_targets,
    embedding_mse_loss,
    mixed_ce_mse_loss,
    position_masks,
    trainable_rows,
    uses_ce,
    uses_mse,
)


def test_hand_computed_values() -> None:
    # One row, 4 output positions, 2 tokens, D = 1.
    # targets: [t0, t1, pad, pad] = [1, 2, 0, 0]; outputs [1, 4, 1, 3].
    # word positions 0..2 (tokens + first pad): errors 0, 4, 1 -> MSE_word = 5/3.
    # pad positions 3: error 9 -> MSE_pad = 9.
    outputs = torch.tensor([[[1.0], [4.0], [1.0], [3.0]]])
    target_embeds = torch.tensor([[[1.0], [2.0]]])
    pad = torch.tensor([0.0])

    loss = embedding_mse_loss(
        outputs, torch.tensor([4]), target_embeds, torch.tensor([2]), pad, alpha=7.0
    )

    assert loss.mse_word.item() == pytest.approx(5 / 3)
    assert loss.mse_pad.item() == pytest.approx(9.0)
    assert loss.total.item() == pytest.approx((7 * 5 / 3 + 3 * 9) / 10)
    assert (loss.num_word_positions, loss.num_pad_positions) == (3, 1)


def test_hand_computed_batch_averages_over_valid_positions_and_dims() -> None:
    # Two rows, D = 2. Row 0: 3 outputs, 1 token; row 1: 2 outputs, 2 tokens.
    outputs = torch.zeros(2, 3, 2)
    outputs[0] = torch.tensor([[1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
    outputs[1, :2] = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    outputs[1, 2] = 100.0  # padding of the output: ignored
    target_embeds = torch.tensor([[[0.0, 0.0], [7.0, 7.0]], [[1.0, 0.0], [0.0, 1.0]]])
    pad = torch.tensor([0.0, 1.0])

    loss = embedding_mse_loss(
        outputs,
        torch.tensor([3, 2]),
        target_embeds,
        torch.tensor([1, 2]),
        pad,
        alpha=9.0,
    )

    # Row 0 word: pos0 vs [0,0] -> 1+1; pos1 (first pad) vs [0,1] -> 0+1. Pad: pos2 -> 9+1.
    # Row 1 word: pos0 vs [1,0] -> 1+0; pos1 vs [0,1] -> 0+1. No pad position.
    assert loss.mse_word.item() == pytest.approx((2 + 1 + 1 + 1) / (4 * 2))
    assert loss.mse_pad.item() == pytest.approx(10 / 2)
    assert loss.total.item() == pytest.approx((9 * 5 / 8 + 1 * 5) / 10)


def test_build_targets_and_masks() -> None:
    embeds = torch.arange(12.0).reshape(2, 3, 2)
    targets = build_targets(embeds, torch.tensor([3, 1]), torch.tensor([-1.0, -2.0]), 5)
    assert targets.shape == (2, 5, 2)
    torch.testing.assert_close(targets[0, :3], embeds[0])
    torch.testing.assert_close(targets[1, 1:], torch.tensor([[-1.0, -2.0]] * 4))

    word, pad = position_masks(torch.tensor([5, 3]), torch.tensor([3, 1]), 5)
    assert word.tolist() == [[True] * 4 + [False], [True, True, False, False, False]]
    assert pad.tolist() == [[False] * 4 + [True], [False, False, True, False, False]]


def test_no_pad_positions_gives_zero_pad_mse() -> None:
    outputs = torch.randn(1, 3, 4)
    loss = embedding_mse_loss(
        outputs,
        torch.tensor([3]),
        torch.randn(1, 3, 4),
        torch.tensor([3]),
        torch.zeros(4),
    )
    assert loss.num_pad_positions == 0
    assert loss.mse_pad.item() == 0.0


@st.composite
def loss_inputs(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    batch = draw(st.integers(1, 4))
    dim = draw(st.integers(1, 5))
    out_lens = [draw(st.integers(1, 8)) for _ in range(batch)]
    tgt_lens = [draw(st.integers(0, n)) for n in out_lens]
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    width = max(out_lens) + draw(st.integers(0, 3))
    tgt_width = max(max(tgt_lens), 1) + draw(st.integers(0, 3))
    return {
        "outputs": torch.randn(batch, width, dim, generator=gen),
        "output_lens": torch.tensor(out_lens),
        "target_embeds": torch.randn(batch, tgt_width, dim, generator=gen),
        "target_lens": torch.tensor(tgt_lens),
        "pad_embed": torch.randn(dim, generator=gen),
    }


def scramble_padding(
    inputs: dict[str, torch.Tensor], value: float
) -> dict[str, torch.Tensor]:
    """Overwrite every padded position of outputs and targets with ``value``."""
    changed = dict(inputs)
    outputs = inputs["outputs"].clone()
    for i, n in enumerate(inputs["output_lens"].tolist()):
        outputs[i, n:] = value
    target_embeds = inputs["target_embeds"].clone()
    for i, n in enumerate(inputs["target_lens"].tolist()):
        target_embeds[i, n:] = value
    changed["outputs"] = outputs
    changed["target_embeds"] = target_embeds
    return changed


@settings(max_examples=60, deadline=None)
@given(
    inputs=loss_inputs(),
    alpha=st.floats(1.0, 10.0),
    value=st.sampled_from([0.0, 1e6, float("nan"), float("inf")]),
)
def test_padded_positions_never_change_the_loss(
    inputs: dict[str, torch.Tensor], alpha: float, value: float
) -> None:
    reference = embedding_mse_loss(**inputs, alpha=alpha)
    scrambled = embedding_mse_loss(**scramble_padding(inputs, value), alpha=alpha)

    assert torch.isfinite(scrambled.total)
    torch.testing.assert_close(scrambled.total, reference.total)
    torch.testing.assert_close(scrambled.mse_word, reference.mse_word)
    torch.testing.assert_close(scrambled.mse_pad, reference.mse_pad)


@settings(max_examples=40, deadline=None)
@given(inputs=loss_inputs())
def test_alpha_ten_ignores_pad_positions(inputs: dict[str, torch.Tensor]) -> None:
    reference = embedding_mse_loss(**inputs, alpha=10.0)

    # Move the outputs at the pad positions (beyond the first pad) far away.
    outputs = inputs["outputs"].clone()
    for i, (n_out, n_tgt) in enumerate(
        zip(inputs["output_lens"].tolist(), inputs["target_lens"].tolist(), strict=True)
    ):
        outputs[i, n_tgt + 1 : n_out] += 1000.0
    moved = embedding_mse_loss(**{**inputs, "outputs": outputs}, alpha=10.0)

    torch.testing.assert_close(moved.total, reference.total)
    torch.testing.assert_close(moved.total, reference.mse_word)


@settings(max_examples=40, deadline=None)
@given(inputs=loss_inputs(), alpha=st.floats(1.0, 10.0))
def test_gradients_flow_only_into_valid_positions(
    inputs: dict[str, torch.Tensor], alpha: float
) -> None:
    outputs = inputs["outputs"].clone().requires_grad_(True)
    loss = embedding_mse_loss(**{**inputs, "outputs": outputs}, alpha=alpha)
    loss.total.backward()

    assert outputs.grad is not None
    for i, n in enumerate(inputs["output_lens"].tolist()):
        assert torch.all(outputs.grad[i, n:] == 0)
    assert torch.any(outputs.grad != 0)


def test_alpha_ten_gives_no_gradient_to_pad_positions() -> None:
    outputs = torch.randn(1, 6, 3, requires_grad=True)
    loss = embedding_mse_loss(
        outputs,
        torch.tensor([6]),
        torch.randn(1, 2, 3),
        torch.tensor([2]),
        torch.zeros(3),
        alpha=10.0,
    )
    loss.total.backward()
    assert outputs.grad is not None
    assert torch.all(outputs.grad[0, 3:] == 0)
    assert torch.all(outputs.grad[0, :3] != 0)


@pytest.mark.parametrize("alpha", [0.5, 0.0, 10.5, -1.0])
def test_alpha_outside_range_is_rejected(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"`alpha` must be in \[1, 10\]"):
        embedding_mse_loss(
            torch.zeros(1, 2, 1),
            torch.tensor([2]),
            torch.zeros(1, 1, 1),
            torch.tensor([1]),
            torch.zeros(1),
            alpha=alpha,
        )


def test_transcript_longer_than_output_is_detectable_and_rejected() -> None:
    output_lens = torch.tensor([5, 2, 4])
    target_lens = torch.tensor([5, 3, 1])
    assert trainable_rows(output_lens, target_lens).tolist() == [True, False, True]

    with pytest.raises(
        UntrainableRowsError, match="row 1: 3 tokens > 2 positions"
    ) as info:
        embedding_mse_loss(
            torch.zeros(3, 5, 2),
            output_lens,
            torch.zeros(3, 5, 2),
            target_lens,
            torch.zeros(2),
        )
    assert info.value.rows == [1]


def test_mixed_loss_values() -> None:
    ce, mse = torch.tensor(2.0), torch.tensor(0.5)
    assert mixed_ce_mse_loss(ce, mse, sigma=0.9).item() == pytest.approx(
        0.1 * 2 + 0.9 * 0.5
    )
    assert mixed_ce_mse_loss(ce, None, sigma=0.5).item() == pytest.approx(1.0)


def test_mixed_loss_endpoints_leave_the_other_term_out() -> None:
    ce_in = torch.tensor(1.5, requires_grad=True)
    mse_in = torch.tensor(0.7, requires_grad=True)

    mixed_ce_mse_loss(ce_in * 1, mse_in * 1, sigma=1.0).backward()
    assert ce_in.grad is None
    assert mse_in.grad is not None and mse_in.grad.item() == 1.0

    mse_in.grad = None
    mixed_ce_mse_loss(ce_in * 1, mse_in * 1, sigma=0.0).backward()
    assert mse_in.grad is None
    assert ce_in.grad is not None and ce_in.grad.item() == 1.0

    # A non-finite term left out cannot poison the loss.
    assert (
        mixed_ce_mse_loss(
            torch.tensor(1.0), torch.tensor(float("nan")), sigma=0.0
        ).item()
        == 1.0
    )


@pytest.mark.parametrize("sigma", [-0.1, 1.01, 2.0])
def test_sigma_outside_range_is_rejected(sigma: float) -> None:
    with pytest.raises(ValueError, match=r"`sigma` must be in \[0, 1\]"):
        mixed_ce_mse_loss(torch.tensor(1.0), torch.tensor(1.0), sigma=sigma)


def test_embedding_ctc_loss_prefers_the_spelled_transcript() -> None:
    """Outputs that are the tokens' embeddings (pad = blank between them) cost
    almost nothing; the same outputs in the wrong order cost a lot."""
    from speechmapper_plugin.losses import embedding_ctc_loss

    gen = torch.Generator().manual_seed(0)
    table = torch.randn(10, 16, generator=gen)
    pad = 9
    right = table[[3, pad, 5, 5, pad, 5]].unsqueeze(0)  # spells 3 5 5
    wrong = table[[5, pad, 3, 3, pad, 5]].unsqueeze(0)  # spells 5 3 5
    ids, lens, out_lens = (
        torch.tensor([[3, 5, 5]]),
        torch.tensor([3]),
        torch.tensor([6]),
    )
    good = embedding_ctc_loss(
        right, out_lens, table, ids, lens, blank=pad, temperature=0.01
    )
    bad = embedding_ctc_loss(
        wrong, out_lens, table, ids, lens, blank=pad, temperature=0.01
    )
    assert good.num_rows == 1 and float(good.total) < 1e-3
    assert float(bad.total) > 1.0


def test_ctc_losses_refuse_the_blank_as_a_target_and_skip_short_rows() -> None:
    from speechmapper_plugin.losses import ctc_head_loss

    log_probs = torch.randn(2, 4, 5).log_softmax(-1)
    with pytest.raises(ValueError, match="is the CTC blank"):
        ctc_head_loss(
            log_probs,
            torch.tensor([4, 4]),
            torch.tensor([[4, 1], [1, 2]]),
            torch.tensor([2, 2]),
            blank=4,
        )
    short = ctc_head_loss(
        log_probs,
        torch.tensor([4, 1]),
        torch.tensor([[0, 1], [1, 2]]),
        torch.tensor([2, 2]),
        blank=4,
    )
    assert short.num_rows == 1


def test_cif_quantity_loss_is_the_mean_count_error() -> None:
    from speechmapper_plugin.losses import cif_quantity_loss

    loss = cif_quantity_loss(torch.tensor([2.5, 4.0]), torch.tensor([3, 2]))
    assert float(loss) == pytest.approx((0.5 + 2.0) / 2)


def test_sigma_endpoints_say_which_terms_to_compute() -> None:
    assert [uses_ce(s) for s in (0.0, 0.5, 1.0)] == [True, True, False]
    assert [uses_mse(s) for s in (0.0, 0.5, 1.0)] == [False, True, True]
    with pytest.raises(ValueError, match=r"`sigma` must be in \[0, 1\]"):
        uses_mse(1.5)


def test_mixed_loss_without_a_term_to_train() -> None:
    # σ = 1 and no transcript in the batch: the given zero, graph and all.
    weight = torch.tensor(2.0, requires_grad=True)
    empty = weight * 0.0
    assert mixed_ce_mse_loss(None, None, sigma=1.0, empty=empty) is empty
    with pytest.raises(ValueError, match="pass `empty`"):
        mixed_ce_mse_loss(None, None, sigma=1.0)

    # Below σ = 1 the CE term is required.
    with pytest.raises(ValueError, match="CE term is required"):
        mixed_ce_mse_loss(None, torch.tensor(1.0), sigma=0.5)
