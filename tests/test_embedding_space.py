"""The functions behind stage 1's embedding-space metrics (embedding WER,
word cosine), checked against brute-force references written here."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from fairseq2.metrics import MetricBag
from fairseq2.nn import BatchLayout

from speechmapper_plugin.datasets.speech_features import SpeechFeaturesBatch
from speechmapper_plugin.llm import (
    PAD_NORM_WARN_RATIO,
    TargetLLMEmbeddings,
    load_target_llm_embeddings,
    report_pad_row,
)
from speechmapper_plugin.metrics import (
    drop_pad_ids,
    nearest_token_ids,
    row_norm_ratio,
    word_position_cosine,
)
from tests.support.llm import LLAMA_CARD


def _brute_force_nearest(vector: list[float], table: list[list[float]]) -> int:
    """The row of ``table`` with the largest cosine similarity to ``vector``."""

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (
            math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        )

    scores = [cosine(vector, row) for row in table]
    return max(range(len(table)), key=lambda i: scores[i])


@pytest.mark.parametrize("chunk_size", [1, 3, 256])
def test_nearest_token_ids_match_brute_force_cosine(chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(50, 8, generator=generator)
    embeds = torch.randn(2, 7, 8, generator=generator)

    ids = nearest_token_ids(embeds, table, chunk_size=chunk_size)

    assert ids.shape == (2, 7)
    for b in range(2):
        for s in range(7):
            expected = _brute_force_nearest(embeds[b, s].tolist(), table.tolist())
            assert ids[b, s].item() == expected


def test_nearest_token_ids_is_cosine_not_distance() -> None:
    # Row 1 is closer in Euclidean distance, row 0 in direction.
    table = torch.tensor([[10.0, 0.0], [0.6, 0.8]])
    embeds = torch.tensor([[1.0, 0.1]])

    assert nearest_token_ids(embeds, table).tolist() == [0]
    # Rescaling a position never changes its token.
    assert nearest_token_ids(embeds * 1e3, table).tolist() == [0]


def test_exact_table_rows_decode_to_their_ids() -> None:
    table = torch.randn(30, 16, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[4, 17, 29, 0, 4]])

    assert nearest_token_ids(table[ids], table).tolist() == ids.tolist()


def test_no_positions_give_no_ids() -> None:
    ids = nearest_token_ids(torch.zeros(3, 0, 4), torch.randn(5, 4))
    assert ids.shape == (3, 0)


def test_drop_pad_ids_keeps_the_valid_non_pad_positions() -> None:
    ids = torch.tensor([5, 9, 0, 9, 0, 0, 7])
    assert drop_pad_ids(ids, 5, pad_idx=0) == [5, 9, 9]
    assert drop_pad_ids(ids, 7, pad_idx=9) == [5, 0, 0, 0, 7]


def test_word_position_cosine_sums_only_word_positions() -> None:
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    outputs = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [float("nan"), 0.0]]])
    word_mask = torch.tensor([[True, True, False]])

    total, count = word_position_cosine(outputs, targets, word_mask)

    # cos = 1 (same direction, other length) and 0 (orthogonal); the masked
    # NaN position does not count.
    assert count == 2
    assert total.item() == pytest.approx(1.0)


# Untrained pad rows (Llama 3.1's `<|finetune_right_pad_id|>` is a reserved
# token; reserved Llama-3 rows are reported all zero or near zero).

PAD_ROWS = {
    "zero": 0.0,
    "tiny_below_normalize_eps": 1e-14,
    "tiny": 1e-6,
}


def _table_with_pad_row(scale: float, pad_idx: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    table = torch.randn(40, 16, generator=generator)
    table[pad_idx] = scale * torch.randn(16, generator=generator)
    return table


@pytest.mark.parametrize("scale", PAD_ROWS.values(), ids=PAD_ROWS.keys())
def test_exact_pad_targets_decode_to_pad_whatever_the_pad_row_norm(
    scale: float,
) -> None:
    pad_idx = 3
    table = _table_with_pad_row(scale, pad_idx)
    ids = torch.tensor([[5, 17, 39, pad_idx, pad_idx, pad_idx]])

    decoded = nearest_token_ids(
        table[ids], table, pad_embedding=table[pad_idx], pad_idx=pad_idx
    )

    assert decoded.tolist() == ids.tolist()


def test_cosine_alone_cannot_decode_a_zero_pad_row() -> None:
    """The control: without the pad vector, exact zero targets decode as junk."""
    pad_idx = 3
    table = _table_with_pad_row(0.0, pad_idx)

    decoded = nearest_token_ids(table[torch.tensor([pad_idx] * 4)], table)

    assert pad_idx not in decoded.tolist()


def test_pad_decision_is_by_distance_to_the_pad_target() -> None:
    # Rows: 0 = pad (zero), 1 = a word at (1, 0).
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    embeds = torch.tensor([[0.4, 0.0], [0.6, 0.0], [0.0, 0.1]])

    decoded = nearest_token_ids(embeds, table, pad_embedding=table[0], pad_idx=0)

    # |x - pad| vs |x - row 1| by hand: 0.4 < 0.6, 0.6 > 0.4, 0.1 < 1.005.
    assert decoded.tolist() == [0, 1, 0]


def test_pad_embedding_and_pad_idx_go_together() -> None:
    table = torch.randn(4, 2)
    with pytest.raises(ValueError, match="together"):
        nearest_token_ids(table, table, pad_idx=0)


def test_row_norm_ratio_by_hand() -> None:
    table = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0], [0.0, 0.0]])

    norm, ratio = row_norm_ratio(table, 3)
    assert (norm, ratio) == (0.0, 0.0)

    # Norms 5, 1, 2, 0: torch's median is the lower middle value, 1.
    norm, ratio = row_norm_ratio(table, 0)
    assert norm == pytest.approx(5.0) and ratio == pytest.approx(5.0)


class _ExactTargets(torch.nn.Module):
    """Stands in for a perfectly trained projector: outputs given vectors."""

    def __init__(self, outputs: torch.Tensor, lens: list[int]) -> None:
        super().__init__()
        self.outputs = outputs
        self.lens = lens

    def forward(
        self, features: torch.Tensor, layout: BatchLayout, *, pre_averaged: bool
    ) -> tuple[torch.Tensor, BatchLayout]:
        return self.outputs, BatchLayout.of(self.outputs, self.lens)


@pytest.mark.parametrize("scale", PAD_ROWS.values(), ids=PAD_ROWS.keys())
def test_stage1_validation_reports_zero_wer_on_exact_targets(scale: float) -> None:
    """Stage-1 validation against a table with an untrained pad row."""
    from recipes.common import CriterionEvalUnit
    from recipes.stage1.criterion import Stage1Criterion
    from speechmapper_plugin.losses import Stage1Weights

    llm = load_target_llm_embeddings(LLAMA_CARD, dtype=torch.float32)
    table = llm.table.clone()
    generator = torch.Generator().manual_seed(3)
    table[llm.pad_idx] = scale * torch.randn(table.size(1), generator=generator)

    transcripts = ["the cat sat on the mat", "a dog ran"]
    rows = [llm.encode(t) for t in transcripts]
    out_lens = [len(r) + 5 for r in rows]  # every row ends in pad positions
    width = max(out_lens)

    # The exact targets, written out here: token rows, then the pad row.
    outputs = table[llm.pad_idx].repeat(len(rows), width, 1)
    for i, ids in enumerate(rows):
        outputs[i, : len(ids)] = table[ids]

    target_ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.int64)
    for i, ids in enumerate(rows):
        target_ids[i, : len(ids)] = ids
    batch = SpeechFeaturesBatch(
        features=torch.zeros(len(rows), width, 8),
        feature_lens=torch.tensor(out_lens),
        target_ids=target_ids,
        target_lens=torch.tensor([len(r) for r in rows]),
        ids=["a", "b"],
        transcripts=transcripts,
    )

    targets = TargetLLMEmbeddings(
        card_name=llm.card_name,
        tokenizer=llm.tokenizer,
        table=table,
        pad_idx=llm.pad_idx,
        pad_token=llm.pad_token,
    )
    unit = CriterionEvalUnit(
        Stage1Criterion(
            _ExactTargets(outputs, out_lens),
            targets,
            Stage1Weights(alpha=9.0),
            score_embeddings=True,
        ),
        name="valid",
    )
    bag = MetricBag(torch.device("cpu"))
    unit.prepare_metric_bag(bag)
    unit.process_batch(batch, bag)
    values: dict[str, object] = {k: m.compute() for k, m in bag.metrics.items()}
    unit.process_metric_values(values)

    assert values["embedding_wer"] == 0.0
    assert float(values["mse_pad"]) == 0.0  # type: ignore[arg-type]
    assert float(values["cosine_word"]) == pytest.approx(1.0)  # type: ignore[arg-type]


def test_tiny_pad_row_is_logged_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = _table_with_pad_row(1e-6)

    with caplog.at_level(logging.INFO, logger="fairseq2"):
        ratio = report_pad_row("some_llm", table, "<pad>", 3, allow_weak=True)

    assert ratio < PAD_NORM_WARN_RATIO
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "untrained" in warnings[0].getMessage()


def test_trained_pad_row_is_logged_without_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = _table_with_pad_row(1.0)

    with caplog.at_level(logging.INFO, logger="fairseq2"):
        ratio = report_pad_row("some_llm", table, "<pad>", 3)

    assert ratio > PAD_NORM_WARN_RATIO
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("median row norm" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("scale", PAD_ROWS.values(), ids=PAD_ROWS.keys())
def test_word_cosine_leaves_out_a_directionless_end_position(scale: float) -> None:
    # Two word targets, then the end-of-transcript position whose target is
    # the (zero or near-zero) pad row; outputs hit every target exactly.
    pad = scale * torch.tensor([0.3, -0.4])
    targets = torch.stack([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), pad])
    word_mask = torch.tensor([[True, True, True]])

    total, count = word_position_cosine(targets[None], targets[None], word_mask)

    assert count == 2
    assert total.item() == pytest.approx(2.0)
