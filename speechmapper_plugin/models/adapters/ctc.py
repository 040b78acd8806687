"""CTC compression (Gaido et al., 2021) as a length adapter.

A CTC head predicts a token of the target LLM's vocabulary (or blank) for every
frame; consecutive frames with the same prediction are averaged into one
output. Two ways of merging (:data:`CTCMerge`):

- ``drop_blanks``: blank frames are dropped, so there are as many outputs as
  tokens the head hears;
- ``average``: the "Avg" compression of Gaido et al. 2021 ("CTC-based
  compression for direct speech translation"): every run, blank runs
  included, becomes the mean of its frames, so nothing the encoder heard is
  thrown away (labels ``a a ∅ ∅ b b b``: 3 outputs, against 2).

In training with targets (stage 1's per-token mode) the segments come from the
forced CTC alignment of the transcript (the most likely CTC path that spells
it) instead of the greedy predictions, so that there is exactly one output per
token, in both modes: the per-token MSE has one target embedding per token and
none for a blank run. The CTC loss trains the head.
"""

from __future__ import annotations

from typing import Final, Literal

import torch
from fairseq2.nn import Linear
from torch import Tensor
from torch.nn import Module
from torch.nn.functional import log_softmax

from speechmapper_plugin.models.adapters.aux import AdapterAux, AlignmentTargets
from speechmapper_plugin.models.frames import valid_positions

CTCMerge = Literal["drop_blanks", "average"]
"""How runs of one CTC prediction become outputs (see the module docstring)."""

CTC_MERGES: Final[tuple[CTCMerge, ...]] = ("drop_blanks", "average")


class CTCCompressionLengthAdapter(Module):
    head: Linear

    def __init__(
        self, model_dim: int, vocab_size: int, *, merge: CTCMerge = "drop_blanks"
    ) -> None:
        super().__init__()
        if merge not in CTC_MERGES:
            raise ValueError(
                f"`merge` must be one of {', '.join(CTC_MERGES)}, but is '{merge}'."
            )
        self.head = Linear(model_dim, vocab_size + 1, bias=True)
        self.blank = vocab_size
        self.merge = merge

    def forward(
        self,
        seqs: Tensor,
        seq_lens: Tensor,
        *,
        targets: AlignmentTargets | None = None,
        aux: AdapterAux | None = None,
    ) -> tuple[Tensor, Tensor]:
        log_probs = log_softmax(self.head(seqs).float(), dim=-1)

        if aux is not None:
            aux.ctc_log_probs = log_probs
            aux.ctc_lens = seq_lens

        if targets is None:
            segments = greedy_segments(
                log_probs.argmax(dim=-1),
                seq_lens,
                self.blank,
                keep_blanks=self.merge == "average",
            )
            # A row of blanks only is one segment of all its frames: the LLM
            # always gets at least one speech position (``average`` has
            # made it so already).
            no_output = (segments.max(dim=1).values < 0) & (seq_lens > 0)
            if bool(no_output.any()):
                whole = valid_positions(seq_lens, seqs.size(1))
                segments = torch.where(no_output.unsqueeze(1) & whole, 0, segments)
        else:
            with torch.no_grad():
                segments, aligned = forced_align(
                    log_probs.detach(), seq_lens, targets.ids, targets.lens, self.blank
                )
            if aux is not None:
                aux.num_unaligned = int((~aligned).sum())

        return segment_means(seqs, segments)


def greedy_segments(
    preds: Tensor, seq_lens: Tensor, blank: int, *, keep_blanks: bool = False
) -> Tensor:
    """``[B, T]`` segment index of each frame (-1: padding, and blank unless
    ``keep_blanks``) for runs of equal greedy predictions."""
    width = preds.size(1)
    valid = valid_positions(seq_lens, width)
    previous = torch.nn.functional.pad(preds[:, :-1], (1, 0), value=-1)
    keep = valid if keep_blanks else valid & (preds != blank)
    starts = keep & (preds != previous)
    index = torch.cumsum(starts.long(), dim=1) - 1
    return torch.where(keep, index, -1)


def segment_means(seqs: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
    """Averages the frames of each segment: ``[B, N, D]`` and ``[B]`` lengths."""
    batch_size, _, dim = seqs.shape
    lens = (segments.max(dim=1).values + 1).clamp_min(0)
    width = max(int(lens.max()) if batch_size else 0, 1)

    index = segments.clamp_min(0)
    weight = (segments >= 0).to(seqs.dtype)

    sums = seqs.new_zeros(batch_size, width, dim)
    sums = sums.scatter_add(
        1, index.unsqueeze(-1).expand(-1, -1, dim), seqs * weight.unsqueeze(-1)
    )
    counts = seqs.new_zeros(batch_size, width).scatter_add(1, index, weight)
    return sums / counts.clamp_min(1.0).unsqueeze(-1), lens


def forced_align(
    log_probs: Tensor,
    seq_lens: Tensor,
    target_ids: Tensor,
    target_lens: Tensor,
    blank: int,
) -> tuple[Tensor, Tensor]:
    """The most likely CTC path spelling each target (Viterbi).

    :returns: ``[B, T]`` the token position each frame is aligned to (-1:
        blank or padding) and ``[B]`` whether the row could be aligned. A row
        that cannot (more tokens plus repeats than frames) has its frames split
        evenly between its tokens instead.
    """
    batch_size, width, _ = log_probs.shape
    device = log_probs.device
    num_states = 2 * target_ids.size(1) + 1

    # Extended labels: blank, y1, blank, y2, ..., blank.
    ext = torch.full((batch_size, num_states), blank, dtype=torch.int64, device=device)
    if target_ids.size(1) > 0:
        ext[:, 1::2] = target_ids
    state_lens = 2 * target_lens + 1
    states = torch.arange(num_states, device=device).unsqueeze(0)
    in_row = states < state_lens.unsqueeze(1)

    # A skip from s-2 is allowed into a token that differs from the previous one.
    prev2 = torch.nn.functional.pad(ext[:, :-2], (2, 0), value=blank)
    can_skip = (ext != blank) & (ext != prev2) & (states >= 2)

    neg_inf = torch.tensor(float("-inf"), device=device)
    emit = log_probs.gather(2, ext.unsqueeze(1).expand(-1, width, -1))  # [B, T, S]

    score = torch.full((batch_size, num_states), float("-inf"), device=device)
    score[:, 0] = emit[:, 0, 0]
    if num_states > 1:
        score[:, 1] = emit[:, 0, 1]
    score = torch.where(in_row, score, neg_inf)

    back = torch.zeros(width, batch_size, num_states, dtype=torch.int64, device=device)

    for t in range(1, width):
        stay = score
        step = torch.nn.functional.pad(score[:, :-1], (1, 0), value=float("-inf"))
        skip = torch.nn.functional.pad(score[:, :-2], (2, 0), value=float("-inf"))
        skip = torch.where(can_skip, skip, neg_inf)
        best, choice = torch.stack([stay, step, skip], dim=-1).max(dim=-1)
        new = torch.where(in_row, best + emit[:, t], neg_inf)
        active = (t < seq_lens).unsqueeze(1)
        score = torch.where(active, new, score)
        back[t] = torch.where(active, choice, 0)

    last = (state_lens - 1).unsqueeze(1)
    end_scores = torch.cat(
        [score.gather(1, last), score.gather(1, (last - 1).clamp_min(0))], dim=1
    )
    end_scores[:, 1] = torch.where(target_lens > 0, end_scores[:, 1], neg_inf)
    best_end, which = end_scores.max(dim=1)
    aligned = torch.isfinite(best_end) & (target_lens > 0)

    state = (state_lens - 1 - which).clamp_min(0)
    path = torch.zeros(batch_size, width, dtype=torch.int64, device=device)
    for t in range(width - 1, -1, -1):
        path[:, t] = state
        state = state - back[t].gather(1, state.unsqueeze(1)).squeeze(1)

    positions = torch.where(path % 2 == 1, (path - 1) // 2, -1)
    frames = torch.arange(width, device=device).unsqueeze(0)
    valid = valid_positions(seq_lens, width)
    positions = torch.where(valid, positions, -1)

    # Even split for rows no path could align.
    even = torch.div(
        frames * target_lens.unsqueeze(1),
        seq_lens.clamp_min(1).unsqueeze(1),
        rounding_mode="floor",
    )
    even = torch.where(valid & (target_lens > 0).unsqueeze(1), even, -1)
    positions = torch.where(aligned.unsqueeze(1), positions, even)

    return positions, aligned
