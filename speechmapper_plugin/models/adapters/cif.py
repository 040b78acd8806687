"""Continuous integrate-and-fire (Dong & Xu, ICASSP 2020) as a length adapter.

Every frame gets a weight in (0, 1); weights are summed frame by frame and an
output fires each time the sum reaches the threshold, as the weighted sum of
the frames integrated so far (the frame that crosses the threshold is split
between the two outputs it borders). In training the weights are scaled so that
they add up to the number of target tokens: exactly one output per token. The
quantity loss ``|sum(weights) - tokens|`` teaches the unscaled weights the
count that inference relies on.
"""

from __future__ import annotations

import torch
from fairseq2.nn import Linear
from torch import Tensor
from torch.nn import Conv1d, Module
from torch.nn.functional import relu

from speechmapper_plugin.models.adapters.aux import AdapterAux, AlignmentTargets
from speechmapper_plugin.models.frames import zero_padding
from speechmapper_plugin.padding import pad_sequences


class CIFLengthAdapter(Module):
    """Weight predictor (Conv1d -> ReLU -> Linear -> sigmoid) and the integrator."""

    conv: Conv1d
    proj: Linear

    def __init__(
        self,
        model_dim: int,
        kernel_size: int,
        *,
        threshold: float = 1.0,
        tail_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.conv = Conv1d(model_dim, model_dim, kernel_size, padding=kernel_size // 2)
        self.proj = Linear(model_dim, 1, bias=True)
        self.threshold = threshold
        self.tail_threshold = tail_threshold

    def weights(self, seqs: Tensor, seq_lens: Tensor) -> Tensor:
        """``[B, T]`` firing weights, 0 at padded frames."""
        hidden = relu(self.conv(seqs.transpose(1, 2)).transpose(1, 2))
        alphas = torch.sigmoid(self.proj(hidden).squeeze(-1))
        return zero_padding(alphas, seq_lens)

    def forward(
        self,
        seqs: Tensor,
        seq_lens: Tensor,
        *,
        targets: AlignmentTargets | None = None,
        aux: AdapterAux | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``seqs`` must be zero at padded frames (the conv sees them)."""
        alphas = self.weights(seqs, seq_lens)

        if aux is not None:
            aux.weight_sums = alphas.sum(dim=1)

        if targets is not None:
            scale = targets.lens.to(alphas.dtype) / alphas.sum(dim=1).clamp_min(1e-6)
            alphas = alphas * scale.unsqueeze(1)

        return integrate_and_fire(
            seqs,
            alphas,
            seq_lens,
            threshold=self.threshold,
            tail_threshold=self.tail_threshold,
            num_fires=None if targets is None else targets.lens,
        )


def integrate_and_fire(
    seqs: Tensor,
    alphas: Tensor,
    seq_lens: Tensor,
    *,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
    num_fires: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Integrates ``seqs`` ``[B, T, D]`` with weights ``alphas`` ``[B, T]``.

    A weight larger than what is left to the threshold may fire several outputs
    in one frame (scaled training weights can exceed 1).

    :param num_fires: training: emit exactly this many outputs per row (a
        remainder left by rounding fires; an extra fire from rounding is
        dropped). ``None`` (inference): the remainder fires if it reaches
        ``tail_threshold``; a row with no output at all emits its whole
        integrated remainder, so that every non-empty row yields one output.
    :returns: ``[B, N, D]`` outputs (zero past each row's length) and ``[B]`` lengths.
    """
    batch_size, width, dim = seqs.shape
    device = seqs.device

    acc = alphas.new_zeros(batch_size)
    acc_h = seqs.new_zeros(batch_size, dim)

    fired: list[list[Tensor]] = [[] for _ in range(batch_size)]

    eps = 1e-4 * threshold

    for t in range(width):
        alpha = alphas[:, t]
        frame = seqs[:, t]
        while True:
            fire = (acc + alpha >= threshold - eps) & (alpha > 0)
            if not bool(fire.any()):
                break
            need = (threshold - acc).clamp_min(0.0)
            out = acc_h + need.unsqueeze(1) * frame
            for row in torch.nonzero(fire).flatten().tolist():
                fired[row].append(out[row])
            used = torch.minimum(need, alpha)
            alpha = torch.where(fire, alpha - used, alpha)
            acc = torch.where(fire, acc.new_zeros(()), acc)
            acc_h = torch.where(fire.unsqueeze(1), acc_h.new_zeros(()), acc_h)
        acc = acc + alpha
        acc_h = acc_h + alpha.unsqueeze(1) * frame

    for row in range(batch_size):
        if int(seq_lens[row]) == 0:
            continue
        if num_fires is not None:
            wanted = int(num_fires[row])
            if len(fired[row]) < wanted:
                fired[row].append(acc_h[row])
            del fired[row][wanted:]
        elif float(acc[row].detach()) >= tail_threshold * threshold or not fired[row]:
            fired[row].append(acc_h[row])

    if not batch_size:
        return seqs.new_zeros(0, 1, dim), torch.zeros(
            0, dtype=torch.int64, device=device
        )
    rows = [torch.stack(f) if f else seqs.new_zeros(0, dim) for f in fired]
    outputs, lens = pad_sequences(rows, device=device)
    if outputs.size(1) == 0:  # nothing fired: one zero position per row
        outputs = seqs.new_zeros(batch_size, 1, dim)
    return outputs, lens
