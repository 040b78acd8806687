"""The input checks both projector families (``speechmapper``,
``speech_adapter``) make before any layer runs.

One copy, so that the SpeechMapper projector and every adapter refuse the same
inputs with the same errors; its own module so that neither family imports the
other for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from fairseq2.nn import BatchLayout
from torch import Tensor

from speechmapper_plugin.input_checks import describe_rows


class ProjectorInputTooShortError(ValueError):
    """Raised when an input yields no output position at all."""

    def __init__(
        self, rows: Sequence[int], lengths: Sequence[int], minimum: int
    ) -> None:
        super().__init__(
            f"Input too short for the projector ({describe_rows(rows, lengths, 'frames')}); it needs at least {minimum} frames to produce one output position. Drop these utterances before batching."
        )
        self.rows = list(rows)
        self.lengths = list(lengths)
        self.minimum = minimum


class ProjectorInputConfig(Protocol):
    """What the checks read of a projector or adapter config."""

    input_dim: int
    frame_averaging: int
    max_input_frames: int


def check_projector_input(
    config: ProjectorInputConfig,
    seqs: Tensor,
    seqs_layout: BatchLayout,
    *,
    pre_averaged: bool,
    name: str,
) -> Tensor:
    """Refuses a packed batch, a wrong feature width and an input longer than
    ``max_input_frames``; returns the lengths on ``seqs``' device.

    :param name: what the messages call the module ("projector", "adapter").
    """
    if seqs_layout.packed:
        raise ValueError(f"The {name} does not support packed batches.")

    if seqs.dim() != 3 or seqs.size(-1) != config.input_dim:
        raise ValueError(
            f"`seqs` must be [batch, frames, {config.input_dim}], but has shape {tuple(seqs.shape)}."
        )

    factor = config.frame_averaging if pre_averaged else 1
    if seqs_layout.max_seq_len * factor > config.max_input_frames:
        raise ValueError(
            f"An input of {seqs_layout.max_seq_len} frames (pre_averaged={pre_averaged}) exceeds `max_input_frames` ({config.max_input_frames}) of the {name}; split long audio or raise `max_input_frames`."
        )

    return seqs_layout.seq_lens_pt.to(seqs.device)


def check_output_lengths(out_lens: Tensor, seq_lens: Tensor, minimum: int) -> None:
    """Refuses the rows that yield no output (``out_lens`` below 1).

    :param minimum: the shortest usable input, for the message.
    :raises ProjectorInputTooShortError: naming those rows.
    """
    if bool((out_lens < 1).any()):
        rows = torch.nonzero(out_lens < 1).flatten().tolist()
        raise ProjectorInputTooShortError(
            rows, [int(seq_lens[r]) for r in rows], minimum
        )
