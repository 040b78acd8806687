"""What the variable-length adapters need from, and give to, their training loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class AlignmentTargets:
    """The transcript a variable-length adapter is trained to emit one output
    per token of (stage 1's per-token mode).

    With targets, ``cif`` scales its weights to fire exactly ``lens`` times and
    ``ctc_compression`` averages the frames of each token of the forced CTC
    alignment: the outputs then line up with the token embeddings.
    """

    ids: Tensor
    """``[B, S]`` right-padded token ids."""

    lens: Tensor
    """``[B]`` tokens per row."""


@dataclass
class AdapterAux:
    """Filled by a forward pass (an out-parameter, so that it passes through
    DDP and FSDP wrappers): the quantities the adapters' own losses need."""

    weight_sums: Tensor | None = None
    """``cif``: ``[B]`` the sum of the (unscaled) firing weights, for the
    quantity loss."""

    ctc_log_probs: Tensor | None = None
    """``ctc_compression``: ``[B, T, V + 1]`` log-probabilities of the CTC head
    (blank = ``V``), for the CTC loss."""

    ctc_lens: Tensor | None = None
    """``ctc_compression``: ``[B]`` valid frames of ``ctc_log_probs``."""

    num_unaligned: int = 0
    """``ctc_compression`` with targets: rows no CTC path could align (more
    tokens plus repeats than frames); their frames were split evenly."""
