"""Stage 2 trains a variable-length adapter's own losses (its CTC head, CIF's
quantity) when asked: a fresh adapter trained by stage 2 alone learns where
the tokens are. Reference values from torch's CTC loss and a hand sum."""

from __future__ import annotations

import torch
from fairseq2.nn import BatchLayout
from torch.nn.functional import ctc_loss

from speechmapper_plugin.datasets.instructions import InstructionBatch
from speechmapper_plugin.losses import stage2_loss
from speechmapper_plugin.losses.adapter import AdapterLossWeights
from speechmapper_plugin.models.adapters import (
    AdapterAux,
    SpeechAdapter,
    create_speech_adapter_model,
)
from speechmapper_plugin.models.adapters.config import _tiny
from speechmapper_plugin.models.adapters.ctc import CTCCompressionLengthAdapter
from tests.test_stage2_loss import (
    instruction_batch,
    llm_targets,
    llm_vocab_size,
    tiny_llm,
)


def fresh_adapter(kind: str) -> SpeechAdapter:
    torch.manual_seed(4)
    config = _tiny(kind, ctc_vocab_size=llm_vocab_size())  # type: ignore[arg-type]
    return create_speech_adapter_model(config).train()


def forward_aux(adapter: SpeechAdapter, batch: InstructionBatch) -> AdapterAux:
    """What the adapter's forward pass on ``batch`` gives its losses."""
    aux = AdapterAux()
    features = batch.features.float()
    with torch.no_grad():
        adapter(
            features,
            BatchLayout.of(features, batch.feature_lens.tolist()),
            pre_averaged=True,
            aux=aux,
        )
    return aux


def test_ctc_compression_head_trains_only_with_adapter_weights() -> None:
    adapter, llm = fresh_adapter("ctc_compression"), tiny_llm()
    batch = instruction_batch()

    def loss(weights: AdapterLossWeights | None) -> torch.Tensor:
        return stage2_loss(
            adapter,
            llm,  # type: ignore[arg-type]
            batch,
            targets=llm_targets(llm),
            sigma=0.0,
            alpha=9.0,
            adapter_weights=weights,
        ).total

    # CE alone reaches the head through the greedy segments: not at all.
    adapter.zero_grad()
    ce = loss(None)
    ce.backward()
    assert isinstance(adapter.length_adapter, CTCCompressionLengthAdapter)
    head = adapter.length_adapter.head
    assert head.weight.grad is None or not bool(head.weight.grad.any())

    adapter.zero_grad()
    total = loss(AdapterLossWeights(ctc=0.5))
    total.backward()
    assert head.weight.grad is not None and bool(head.weight.grad.any())

    # The added term: torch's CTC loss of the head on row 0 (row 1 has no
    # transcript), per token, times 0.5.
    aux = forward_aux(adapter, batch)
    assert aux.ctc_log_probs is not None and aux.ctc_lens is not None
    n = int(aux.ctc_lens[0])
    reference = ctc_loss(
        aux.ctc_log_probs[0, :n].unsqueeze(1),
        batch.target_ids[:1, :3],
        torch.tensor([n]),
        torch.tensor([3]),
        blank=aux.ctc_log_probs.size(-1) - 1,
    )  # mean reduction: divided by the target length
    torch.testing.assert_close(total.detach() - ce.detach(), 0.5 * reference)


def test_cif_quantity_counts_only_rows_with_a_transcript() -> None:
    adapter, llm = fresh_adapter("cif"), tiny_llm()
    batch = instruction_batch()
    result = stage2_loss(
        adapter,
        llm,  # type: ignore[arg-type]
        batch,
        targets=llm_targets(llm),
        sigma=0.0,
        alpha=9.0,
        adapter_weights=AdapterLossWeights(quantity=2.0),
    )
    assert result.adapter is not None and result.adapter.quantity is not None
    assert result.adapter.ctc is None
    aux = forward_aux(adapter, batch)
    assert aux.weight_sums is not None
    expected = (aux.weight_sums[0] - 3.0).abs()
    torch.testing.assert_close(result.adapter.quantity.detach(), expected)
    assert result.ce is not None
    torch.testing.assert_close(
        result.total.detach(), result.ce.detach() + 2.0 * expected
    )
