"""The stage-2 objective: σ endpoints, gradients, and the frozen LLM."""

from __future__ import annotations

import pytest
import torch
from fairseq2.models.llama import LLaMAConfig, create_llama_model

from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from speechmapper_plugin.speech_llm.stage2_loss import stage2_loss


def tiny_llm() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LLaMAConfig(
        model_dim=64,
        max_seq_len=128,
        vocab_size=40,
        num_layers=2,
        num_attn_heads=4,
        num_key_value_heads=2,
        ffn_inner_dim=128,
        dropout_p=0.0,
    )
    llm = create_llama_model(config).eval()
    llm.requires_grad_(False)
    return llm


def tiny_projector() -> torch.nn.Module:
    torch.manual_seed(1)
    hub = get_speechmapper_model_hub()
    return hub.create_new_model(hub.get_arch_config("tiny"), device=torch.device("cpu"))


BATCH = {
    "features": torch.randn(2, 60, 64, generator=torch.Generator().manual_seed(2)),
    "feature_lens": torch.tensor([60, 45]),
    "prefix_ids": [(1, 2, 3), (1, 4)],
    "suffix_ids": [(5, 6), (5, 6)],
    "response_ids": [(7, 8, 9, 3), (10, 3)],
    "transcript_ids": [(7, 8, 9), None],
}


def run(projector: torch.nn.Module, llm: torch.nn.Module, sigma: float, **kw: object):  # type: ignore[no-untyped-def]
    return stage2_loss(
        projector,
        llm,  # type: ignore[arg-type]
        **BATCH,  # type: ignore[arg-type]
        embedding_table=llm.decoder_frontend.embed.weight,  # type: ignore[union-attr]
        pad_idx=0,
        sigma=sigma,
        alpha=9.0,
        **kw,  # type: ignore[arg-type]
    )


def grads(projector: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    projector.zero_grad()
    loss.backward()
    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for p in projector.parameters()
    ]


def count_llm_calls(llm: torch.nn.Module) -> list[int]:
    calls = [0]
    llm.decoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))  # type: ignore[union-attr]
    return calls


def test_mixed_loss_combines_the_terms() -> None:
    projector, llm = tiny_projector(), tiny_llm()
    loss = run(projector, llm, 0.3)
    assert loss.ce is not None and loss.mse is not None
    assert loss.num_mse_rows == 1  # only row 0 has a transcript
    assert loss.num_response_tokens == 6
    torch.testing.assert_close(loss.total, 0.7 * loss.ce + 0.3 * loss.mse.total)


def test_sigma_one_trains_only_mse_and_never_runs_the_llm() -> None:
    projector, llm = tiny_projector(), tiny_llm()
    calls = count_llm_calls(llm)

    loss = run(projector, llm, 1.0)
    assert calls[0] == 0 and loss.ce is None and loss.mse is not None
    g_sigma_one = grads(projector, loss.total)

    mse_only = run(projector, llm, 0.5, compute_all=True).mse
    assert mse_only is not None
    g_mse = grads(projector, mse_only.total)
    for a, b in zip(g_sigma_one, g_mse, strict=True):
        torch.testing.assert_close(a, b)


def test_sigma_zero_trains_only_ce() -> None:
    projector, llm = tiny_projector(), tiny_llm()
    loss = run(projector, llm, 0.0)
    assert loss.mse is None and loss.ce is not None
    torch.testing.assert_close(loss.total, loss.ce)
    g_sigma_zero = grads(projector, loss.total)

    ce_only = run(projector, llm, 0.5, compute_all=True).ce
    assert ce_only is not None
    g_ce = grads(projector, ce_only)
    for a, b in zip(g_sigma_zero, g_ce, strict=True):
        torch.testing.assert_close(a, b)
    assert any(g.abs().sum() > 0 for g in g_sigma_zero)


def test_validation_reports_both_terms_at_the_endpoints() -> None:
    projector, llm = tiny_projector(), tiny_llm()
    at_one = run(projector, llm, 1.0, compute_all=True)
    assert at_one.ce is not None and at_one.mse is not None
    torch.testing.assert_close(at_one.total, at_one.mse.total)
    at_zero = run(projector, llm, 0.0, compute_all=True)
    assert at_zero.mse is not None
    torch.testing.assert_close(at_zero.total, at_zero.ce)


def test_no_transcript_at_sigma_one_gives_a_zero_loss_with_a_graph() -> None:
    projector, llm = tiny_projector(), tiny_llm()
    batch = {**BATCH, "transcript_ids": [None, None]}
    loss = stage2_loss(
        projector,
        llm,
        **batch,
        embedding_table=llm.decoder_frontend.embed.weight,
        pad_idx=0,
        sigma=1.0,
        alpha=9.0,  # type: ignore[arg-type, union-attr]
    )
    assert loss.total.item() == 0.0 and loss.total.requires_grad
    loss.total.backward()


def test_the_llm_is_never_changed() -> None:
    projector, llm = tiny_projector(), tiny_llm()
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-2)
    for _ in range(3):
        loss = run(projector, llm, 0.5)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
    assert all(p.grad is None for p in llm.parameters())
    for key, value in llm.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("sigma", [-0.5, 1.5])
def test_sigma_outside_range_is_rejected(sigma: float) -> None:
    with pytest.raises(ValueError, match="`sigma` must be in"):
        run(tiny_projector(), tiny_llm(), sigma)
