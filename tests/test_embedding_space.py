"""The functions behind stage 1's embedding-space metrics (embedding WER,
word cosine), checked against brute-force references written here."""

from __future__ import annotations

import math

import pytest
import torch

from speechmapper_plugin.metrics import (
    drop_pad_ids,
    nearest_token_ids,
    word_position_cosine,
)


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
