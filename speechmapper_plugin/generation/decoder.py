"""Incremental decoding of a fairseq2 ``TransformerLM`` from embeddings.

fairseq2's generators start from token ids; a SpeechMapper prompt is a sequence
of embeddings (text embeddings around speech embeddings), so this class drives
the model's parts directly: ``decoder`` on embeddings with an
``IncrementalStateBag`` (the KV cache), ``decoder_frontend`` to embed generated
tokens, ``final_proj`` for logits. Every row of the batch sits at the same
position (prompts are right-padded and never padded inside the cache), which
is why the caller feeds the prompts' common part at once and the rest of
longer prompts position by position, as fairseq2's own generators do.
"""

from __future__ import annotations

from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout, IncrementalStateBag
from torch import Tensor


class GenerationError(RuntimeError):
    """Raised when the model produces NaN logits during generation."""


class EmbeddingDecoder:
    """Feeds embeddings to a ``TransformerLM`` and keeps its KV cache."""

    def __init__(
        self, model: TransformerLM, max_seq_len: int, *, capacity_increment: int = 16
    ) -> None:
        """
        :param max_seq_len: The most positions any row will be fed.
        :param capacity_increment: The KV cache grows by this many positions at
            a time; beam search copies the cache at every step, so it should
            not be preallocated to its final size.
        """
        self._model = model
        # `increment_step_nr` requires the step number to stay below the maximum.
        self._bag = IncrementalStateBag(
            max_seq_len + 1, capacity_increment=capacity_increment
        )

    @property
    def position(self) -> int:
        """The position of the next embedding fed (the number fed so far)."""
        return self._bag.step_nr

    def feed(self, embeds: Tensor) -> Tensor:
        """Run ``embeds`` (``[N, S, D]``) and return the logits of the last position (``[N, V]``)."""
        layout = BatchLayout.of(embeds)
        hidden = self._model.decoder(embeds, layout, state_bag=self._bag)
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
