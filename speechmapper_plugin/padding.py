"""Right-padding variable-length rows into a batch, with their lengths.

fairseq2's ``pad_seqs`` (``fairseq2.nn.utils.padding``) serves where a
``BatchLayout`` is wanted and no row is empty (the SeamlessM4T fbank batch).
This helper is for the other cases: rows may have length 0 (a CIF adapter
that fires nothing, an empty transcript), the lengths come back as an
``int64`` tensor (``pad_seqs``' layout holds ``int32``) that indexes and
compares with the rest of the code, and gradients flow through (it is
``torch.nn.utils.rnn.pad_sequence`` underneath).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_sequences(
    seqs: Sequence[Tensor],
    pad_value: float = 0,
    *,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Right-pads ``[L_i, ...]`` tensors into ``[B, max L, ...]``.

    :param device: where the batch and the lengths go (default: the rows'
        device for the batch, the CPU for the lengths).
    :returns: the batch and the ``[B]`` ``int64`` lengths.
    """
    rows = [s.to(device) for s in seqs] if device is not None else list(seqs)
    lengths = torch.tensor([s.size(0) for s in rows], device=device)
    batch = torch.nn.utils.rnn.pad_sequence(
        rows, batch_first=True, padding_value=pad_value
    )
    return batch, lengths
