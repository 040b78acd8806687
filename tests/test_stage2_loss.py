"""The stage-2 objective: σ endpoints, gradients, and the frozen LLM."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from fairseq2.models.llama import LLaMAConfig, create_llama_model

from speechmapper_plugin.datasets.instructions import InstructionBatch
from speechmapper_plugin.llm import (
    TargetLLMEmbeddings,
    load_target_llm_embeddings,
    resolve_target_tokens,
)
from speechmapper_plugin.losses import stage2_loss
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from speechmapper_plugin.padding import pad_sequences
from tests.support.cards import SessionCards
from tests.support.llm import LLAMA_CARD


def tiny_llm() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LLaMAConfig(
        model_dim=64,
        max_seq_len=128,
        vocab_size=llm_vocab_size(),
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


FEATURES = torch.randn(2, 60, 64, generator=torch.Generator().manual_seed(2))
FEATURE_LENS = torch.tensor([60, 45])
PREFIX_IDS = [(1, 2, 3), (1, 4)]
SUFFIX_IDS = [(5, 6), (5, 6)]
RESPONSE_IDS = [(7, 8, 9, 3), (10, 3)]
TRANSCRIPT_IDS: list[tuple[int, ...] | None] = [(7, 8, 9), None]


def instruction_batch(
    rows: list[int] | None = None,
    *,
    features: torch.Tensor = FEATURES,
    transcript_ids: list[tuple[int, ...] | None] = TRANSCRIPT_IDS,
) -> InstructionBatch:
    """The test batch (its ``rows``) as the dataset collates it: the
    transcripts become padded target ids, 0 tokens where there is none."""
    rows = [0, 1] if rows is None else rows
    target_ids, target_lens = pad_sequences(
        [torch.tensor(transcript_ids[i] or (), dtype=torch.int64) for i in rows]
    )
    return InstructionBatch(
        features=features[rows],
        feature_lens=FEATURE_LENS[rows],
        prefix_ids=[PREFIX_IDS[i] for i in rows],
        suffix_ids=[SUFFIX_IDS[i] for i in rows],
        response_ids=[RESPONSE_IDS[i] for i in rows],
        target_ids=target_ids,
        target_lens=target_lens,
        ids=[f"row{i}" for i in rows],
    )


@cache
def llm_vocab_size() -> int:
    return load_target_llm_embeddings(LLAMA_CARD).num_embeddings


def llm_targets(llm: torch.nn.Module) -> TargetLLMEmbeddings:
    """The MSE targets as the stage-2 recipe builds them: the test Llama
    card's tokens with the loaded LLM's own table."""
    table = llm.decoder_frontend.embed.weight.detach()  # type: ignore[union-attr, operator]
    return resolve_target_tokens(LLAMA_CARD).with_table(table)


def run(projector: torch.nn.Module, llm: torch.nn.Module, sigma: float, **kw: object):  # type: ignore[no-untyped-def]
    return stage2_loss(
        projector,
        llm,  # type: ignore[arg-type]
        instruction_batch(),
        targets=llm_targets(llm),
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
    loss = stage2_loss(
        projector,
        llm,  # type: ignore[arg-type]
        instruction_batch(transcript_ids=[None, None]),
        targets=llm_targets(llm),
        sigma=1.0,
        alpha=9.0,
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


def test_stage2_mse_targets_are_stage1s_with_eos(test_cards: SessionCards) -> None:
    """With ``add_eos`` (and sentence case), a transcript has the same target
    ids, and the same MSE, in stage 2 as in stage 1: the ids checked against
    the Hugging Face tokenizer on hand-normalised text plus ``<|eot_id|>``."""
    from transformers import AutoTokenizer

    from recipes.common import TranscriptTargetsSection, load_target_tokens
    from recipes.stage1.config import TargetLLMSection
    from speechmapper_plugin.datasets.speech_features import SpeechFeaturesBatch
    from speechmapper_plugin.losses import Stage1Weights, stage1_loss

    policy = {"add_eos": True, "transcript_normalization": "sentence_case"}
    card = test_cards.llms.llama_card
    section = TargetLLMSection(name=card, **policy)  # type: ignore[arg-type]
    stage1 = load_target_tokens(section, card).read_table()  # as the stage-1 recipe

    projector, llm = tiny_projector(), tiny_llm()  # σ = 1: the LLM never runs
    stage2 = load_target_tokens(TranscriptTargetsSection(**policy), card)  # type: ignore[arg-type]
    # Stage 2 takes the table of the loaded LLM: the checkpoint's, as stage 1.
    stage2_targets = stage2.with_table(stage1.table)

    reference = AutoTokenizer.from_pretrained(test_cards.llms.llama_dir)
    text = "I THINK I'LL GO HOME"
    expected = [
        *reference.encode("I think I'll go home", add_special_tokens=False),
        reference.convert_tokens_to_ids("<|eot_id|>"),
    ]
    assert stage1.encode(text).tolist() == expected
    assert stage2.encode(text).tolist() == expected

    # The same row through both stages' losses, on the same table.
    features = torch.randn(1, 200, 64, generator=torch.Generator().manual_seed(4))
    lens = torch.tensor([200])
    ids = torch.tensor([expected])
    batch = SpeechFeaturesBatch(
        features=features,
        feature_lens=lens,
        target_ids=ids,
        target_lens=torch.tensor([len(expected)]),
        ids=["row"],
        transcripts=[text],
    )
    terms = stage1_loss(
        projector, batch, targets=stage1, weights=Stage1Weights(alpha=9.0)
    )

    def stage2_mse(transcript_ids: list[int]) -> torch.Tensor:
        loss = stage2_loss(
            projector,
            llm,  # type: ignore[arg-type]
            InstructionBatch(
                features=features,
                feature_lens=lens,
                prefix_ids=[(1, 2)],
                suffix_ids=[(5, 6)],
                response_ids=[(7, 3)],
                target_ids=torch.tensor([transcript_ids]),
                target_lens=torch.tensor([len(transcript_ids)]),
                ids=["row"],
            ),
            targets=stage2_targets,
            sigma=1.0,
            alpha=9.0,
        )
        assert loss.mse is not None
        return loss.mse.total

    torch.testing.assert_close(
        stage2_mse(stage2.encode(text).tolist()), terms.mse.total
    )

    # Control: without the EOS target (the old raw-encoder path) the MSE differs.
    assert not torch.allclose(stage2_mse(expected[:-1]), terms.mse.total)


def test_stage2_units_skip_and_count_non_finite_rows() -> None:
    """Like stage 1's: a row with NaN features is left out and counted; the
    loss is that of the other rows (computed here without the bad row)."""
    from fairseq2.metrics import MetricBag

    from recipes.common import CriterionEvalUnit, CriterionTrainUnit
    from recipes.stage2.criterion import Stage2Criterion

    projector, llm = tiny_projector(), tiny_llm()
    targets = llm_targets(llm)

    def criterion(**kw: bool) -> Stage2Criterion:
        return Stage2Criterion(projector, llm, targets, sigma=0.5, alpha=9.0, **kw)  # type: ignore[arg-type]

    features = FEATURES.clone()
    features[1, 3, 0] = float("nan")

    expected = stage2_loss(
        projector,
        llm,  # type: ignore[arg-type]
        instruction_batch([0]),
        targets=targets,
        sigma=0.5,
        alpha=9.0,
    ).total

    train = CriterionTrainUnit(criterion())
    bag = MetricBag(torch.device("cpu"))
    train.prepare_metric_bag(bag)
    loss, _ = train.process_batch(instruction_batch([0, 1], features=features), bag)
    torch.testing.assert_close(loss, expected)
    assert int(bag.metrics["num_skipped_non_finite"].compute()) == 1
    assert int(bag.metrics["num_examples"].compute()) == 1

    # Every row bad: a zero loss that still reaches every parameter.
    loss, _ = train.process_batch(instruction_batch([1], features=features), bag)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in projector.parameters())
    assert int(bag.metrics["num_skipped_non_finite"].compute()) == 2

    valid = CriterionEvalUnit(criterion(compute_all=True), "dev")
    bag = MetricBag(torch.device("cpu"))
    valid.prepare_metric_bag(bag)
    valid.process_batch(instruction_batch([0, 1], features=features), bag)
    assert int(bag.metrics["num_skipped_non_finite"].compute()) == 1
    assert int(bag.metrics["num_examples"].compute()) == 1

    # The MSE parts are logged as stage 1 logs them.
    mse = run(projector, llm, 0.5).mse
    assert mse is not None and mse.num_pad_positions > 0
    for key, part in (("mse_word", mse.mse_word), ("mse_pad", mse.mse_pad)):
        assert float(bag.metrics[key].compute()) == pytest.approx(float(part.detach()))
