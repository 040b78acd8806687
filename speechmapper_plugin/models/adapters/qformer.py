"""Q-Formers as length adapters: learned queries cross-attend to speech frames.

``WindowQFormer`` with a window of ``w`` frames is the window-level Q-Former of
SALMONN (Tang et al., 2024): every window of ``w`` frames (the last one may be
partial) is summarised by the same ``num_queries`` queries, so the output rate
is fixed. With no window (the whole utterance) it is the plain Q-Former of
BLIP-2: ``num_queries`` outputs whatever the length.
"""

from __future__ import annotations

import torch
from fairseq2.models.transformer import TransformerDecoder
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn import Module, Parameter


class WindowQFormer(Module):
    """Queries (self-attention) attending to the frames of each window."""

    queries: Parameter
    decoder: TransformerDecoder

    def __init__(
        self,
        decoder: TransformerDecoder,
        num_queries: int,
        model_dim: int,
        window_size: int | None,
    ) -> None:
        """
        :param decoder: Q-Former layers: non-causal self-attention over the
            queries, cross-attention to the window, feed-forward.
        :param window_size: frames per window; ``None``: the whole utterance.
        """
        super().__init__()
        self.queries = Parameter(torch.empty(num_queries, model_dim))
        torch.nn.init.normal_(self.queries, std=0.02)
        self.decoder = decoder
        self.window_size = window_size

    def forward(self, seqs: Tensor, seq_lens: Tensor) -> tuple[Tensor, Tensor]:
        batch_size, width, dim = seqs.shape
        num_queries = self.queries.size(0)

        if self.window_size is None:
            windows, window_lens = seqs, seq_lens
            num_windows = 1
        else:
            size = self.window_size
            num_windows = max((width + size - 1) // size, 1)
            padded = torch.nn.functional.pad(
                seqs, (0, 0, 0, num_windows * size - width)
            )
            windows = padded.reshape(batch_size * num_windows, size, dim)
            starts = torch.arange(num_windows, device=seqs.device) * size
            window_lens = (seq_lens.unsqueeze(1) - starts.unsqueeze(0)).clamp(0, size)
            window_lens = window_lens.reshape(-1)

        # Only windows holding frames are computed: attention over no key at
        # all is undefined.
        used = torch.nonzero(window_lens > 0).flatten()
        outputs = seqs.new_zeros(batch_size * num_windows, num_queries, dim)
        if used.numel() > 0:
            keys = windows[used]
            key_lens = window_lens[used]
            keys = keys[:, : int(key_lens.max())]
            queries = self.queries.to(seqs.dtype).expand(used.numel(), -1, -1)
            summary = self.decoder(
                queries,
                BatchLayout.of(queries),
                keys,
                BatchLayout.of(keys, key_lens.tolist()),
            )
            outputs = outputs.index_copy(0, used, summary)

        outputs = outputs.reshape(batch_size, num_windows * num_queries, dim)
        out_lens = (window_lens > 0).reshape(batch_size, num_windows).sum(dim=1)
        return outputs, out_lens * num_queries
