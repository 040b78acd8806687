"""Checks on the values and lengths fed to the models: finiteness, and whether
a prompt fits the LLM's context.

They sit at the ground of the package so that decoding, the losses and the
training units use them without reaching up into the data layer; the reasons
and messages for a skipped example are :mod:`speechmapper_plugin.data.usability`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def is_finite(values: Tensor) -> bool:
    """Whether ``values`` holds no NaN or infinity (a single non-finite frame
    turns a whole batch's loss into NaN)."""
    return bool(torch.isfinite(values).all())


def finite_rows(values: Tensor, lens: Sequence[int] | Tensor | None = None) -> Tensor:
    """``[B]`` bool: which rows of ``values`` (``[B, T, ...]``) are finite.

    :param lens: The valid positions per row; values after them (padding)
        are not looked at. ``None``: the whole row counts.
    """
    finite = (
        torch.isfinite(values).flatten(2).all(dim=2)
        if values.ndim > 2
        else (torch.isfinite(values))
    )
    if lens is not None:
        lens_t = torch.as_tensor(lens, device=values.device)
        positions = torch.arange(values.size(1), device=values.device)
        finite = finite | (positions.unsqueeze(0) >= lens_t.unsqueeze(1))

    return finite.all(dim=1)


def sequence_fits(
    prompt_len: int, max_seq_len: int, *, response_len: int | None = None
) -> bool:
    """Whether the LLM's context holds a prompt and its response (training),
    or a prompt and at least one new token (generation: ``response_len=None``)."""
    needed = prompt_len + (1 if response_len is None else response_len)

    return needed <= max_seq_len


def describe_rows(rows: Sequence[int], lengths: Sequence[int], unit: str) -> str:
    """``row 0: 12 frames, row 3: 7 frames``: the rows a refusal names, so
    that every check that refuses rows of a batch says it the same way."""
    return ", ".join(f"row {r}: {n} {unit}" for r, n in zip(rows, lengths, strict=True))
