"""Incremental decoding of a fairseq2 ``TransformerLM`` from embeddings.

fairseq2's generators start from token ids; a SpeechMapper prompt is a sequence
of embeddings (text embeddings around speech embeddings), so this class drives
the model's parts directly: ``decoder`` on embeddings with an
``IncrementalStateBag`` (the KV cache), ``decoder_frontend`` to embed generated
tokens, ``final_proj`` for logits.

Every row of the batch is fed the same position at each call: fairseq2's
attention refuses padded batches in incremental decoding. Prompts of different
lengths are therefore fed in one of two ways:

- right-aligned (left-padded; :func:`right_aligned`): every prompt ends at the
  same position, so one forward pass reads them all and every row generates
  from the next position on. The padding is kept out of attention by
  :class:`RowStartBias`, given to a copy of the decoder whose self-attention
  SDPAs differ from the model's in their bias only (:func:`with_row_starts`).
  RoPE sees row ``i``'s positions shifted by its padding, which changes no
  attention score (RoPE scores depend on the distance between positions only).
- left-aligned (right-padded), where the model's attention takes no bias tensor
  (fairseq2's flash SDPAs): the prompts' common part is fed at once and the
  rest of longer prompts position by position, as fairseq2's own generators
  do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import final

import torch
from fairseq2.data_type import DataType
from fairseq2.device import Device
from fairseq2.models.transformer import (
    SDPA,
    AttentionBias,
    CausalAttentionBias,
    NaiveSDPA,
    TorchSDPA,
)
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout, IncrementalStateBag
from torch import Tensor
from torch.nn import Module
from typing_extensions import override


class GenerationError(RuntimeError):
    """Raised when the model produces NaN logits during generation."""


@final
class RowStartBias(AttentionBias):
    """Causal attention in which each row sees no key before its start.

    Row ``i``'s sequence begins at position ``starts[i]`` (its left padding
    comes before it). A padding query sees only its own key, so that it has
    something to attend to (a row of -inf would give NaN, and a NaN value
    poisons every query even at weight 0).
    """

    def __init__(self, starts: Tensor) -> None:
        """:param starts: ``[N]`` int64, the first position of each row."""
        self.starts = starts

    @override
    def create_bias_tensor(
        self, q_len: int, k_len: int, device: Device, dtype: DataType
    ) -> Tensor:
        """``[N, 1, q_len, k_len]``: the queries are the last ``q_len`` of the ``k_len`` positions."""
        keys = torch.arange(k_len, device=device)
        queries = torch.arange(k_len - q_len, k_len, device=device).unsqueeze(1)
        causal = keys <= queries  # [S, S_kv]
        own = keys == queries
        in_row = keys >= self.starts.to(device).view(-1, 1, 1)  # [N, 1, S_kv]
        visible = causal & (in_row | own)  # [N, S, S_kv]
        bias = torch.zeros(visible.shape, device=device, dtype=dtype)
        return bias.masked_fill_(~visible, -torch.inf).unsqueeze(1)

    def reorder(self, new_order: Tensor) -> None:
        """Follow the rows of the KV cache (see :meth:`EmbeddingDecoder.reorder`)."""
        self.starts = self.starts.index_select(0, new_order)

    def __repr__(self) -> str:
        return f"RowStartBias(starts={self.starts.tolist()})"


def _takes_bias_tensor(sdpa: SDPA) -> bool:
    """Whether ``sdpa`` computes with its ``bias`` through a bias tensor and
    uses plain causal attention (fairseq2's torch and naive SDPAs do; its
    flash SDPAs are causal-only)."""
    if not isinstance(sdpa, TorchSDPA | NaiveSDPA):
        return False
    return sdpa.bias == CausalAttentionBias()


def _replace_modules(
    module: Module, replace: Callable[[Module], Module | None]
) -> Module:
    """``module`` with every submodule that ``replace`` maps to a new one
    replaced, copying (shallowly) only the modules on the way to them: all
    parameters, buffers and other modules are shared, and ``module`` itself is
    left as it is."""
    new = replace(module)
    if new is not None:
        return new
    children = {
        name: _replace_modules(child, replace)
        for name, child in module.named_children()
    }
    if all(children[name] is child for name, child in module.named_children()):
        return module
    clone = copy.copy(module)
    clone._modules = {**module._modules, **children}
    return clone


def with_row_starts(decoder: Module, bias: RowStartBias) -> Module | None:
    """A view of ``decoder`` whose self-attention uses ``bias``; ``None`` if
    one of its SDPAs takes no bias tensor or is not plain causal (sliding
    windows), where prompts are fed left-aligned instead."""
    sdpas = [m for m in decoder.modules() if isinstance(m, SDPA)]
    if not sdpas or not all(_takes_bias_tensor(s) for s in sdpas):
        return None

    def rebias(module: Module) -> Module | None:
        if not isinstance(module, TorchSDPA | NaiveSDPA):
            return None
        clone = copy.copy(module)
        clone.bias = bias
        return clone

    return _replace_modules(decoder, rebias)


def right_aligned(embeds: Tensor, prompt_lens: Sequence[int]) -> Tensor:
    """``[B, max(prompt_lens), D]`` prompts that all end at the last position,
    zeros before each (its padding is never attended to)."""
    width = max(prompt_lens)
    aligned = embeds.new_zeros(len(prompt_lens), width, embeds.size(2))
    for row, length in enumerate(prompt_lens):
        aligned[row, width - length :] = embeds[row, :length]
    return aligned


class EmbeddingDecoder:
    """Feeds embeddings to a ``TransformerLM`` and keeps its KV cache."""

    def __init__(
        self,
        model: TransformerLM,
        max_seq_len: int,
        *,
        row_starts: Tensor | None = None,
        capacity_increment: int = 16,
    ) -> None:
        """
        :param max_seq_len: The most positions any row will be fed.
        :param row_starts: ``[N]`` int64, the first position of each row's
            sequence, for right-aligned prompts (see the module docstring);
            ``None`` when every row starts at 0.
        :param capacity_increment: The KV cache grows by this many positions at
            a time; beam search copies the cache at every step, so it should
            not be preallocated to its final size.
        :raises ValueError: If ``row_starts`` is given for a model whose
            attention takes no bias tensor (check with :meth:`takes_row_starts`).
        """
        self._model = model
        self._decoder: Module = model.decoder
        self._bias: RowStartBias | None = None
        if row_starts is not None:
            self._bias = RowStartBias(row_starts)
            decoder = with_row_starts(model.decoder, self._bias)
            if decoder is None:
                raise ValueError(
                    "The model's self-attention takes no bias tensor (a flash SDPA or a sliding window); feed its prompts left-aligned."
                )
            self._decoder = decoder
        # `increment_step_nr` requires the step number to stay below the maximum.
        self._bag = IncrementalStateBag(
            max_seq_len + 1, capacity_increment=capacity_increment
        )

    @staticmethod
    def takes_row_starts(model: TransformerLM) -> bool:
        """Whether ``model`` can be fed right-aligned prompts (``row_starts``)."""
        return with_row_starts(model.decoder, RowStartBias(torch.zeros(1))) is not None

    @property
    def position(self) -> int:
        """The position of the next embedding fed (the number fed so far)."""
        return self._bag.step_nr

    def feed(self, embeds: Tensor) -> Tensor:
        """Run ``embeds`` (``[N, S, D]``) and return the logits of the last position (``[N, V]``)."""
        layout = BatchLayout.of(embeds)
        hidden = self._decoder(embeds, layout, state_bag=self._bag)
        self._bag.increment_step_nr(embeds.size(1))
        logits = self._model.final_proj(hidden[:, -1])
        if logits.isnan().any():
            rows = logits.isnan().any(dim=-1).nonzero().flatten().tolist()
            raise GenerationError(
                f"The model produced NaN logits at position {self.position - 1} for batch rows {rows}."
            )
        return logits

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """The decoder inputs (``[N, 1, D]``) for ``tokens`` (``[N]``) at the current position."""
        seqs = tokens.unsqueeze(1)
        embeds, _ = self._model.decoder_frontend(
            seqs, BatchLayout.of(seqs), state_bag=self._bag
        )
        return embeds

    def reorder(self, new_order: Tensor) -> None:
        """Select (and repeat) rows of the KV cache: ``new_order`` is ``[N_new]``."""
        self._bag.reorder(new_order)
        if self._bias is not None:
            self._bias.reorder(new_order)
