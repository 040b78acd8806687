"""Shaw relative-position attention computed with a gather and fused SDPA.

fairseq2's ``ShawRelativePositionSDPA`` (like transformers' and Meta's
original) looks up a relative-key vector for every (query, key) pair, an
``[S, S, head_dim]`` tensor, and contracts it with the queries; then it runs
attention in Python (matmul, softmax, matmul). With clipped positions there are
only ``max_lhs + 1 + max_rhs`` (73) distinct relative keys, so this module
contracts the queries with the 73 table rows (``[N, H, S, 73]``), gathers the
``[N, H, S, S]`` logits by relative index, and hands them as an additive mask
to ``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel on CPU
and GPU). The math is identical; results match to float rounding (~1e-6).

Parameter names equal fairseq2's module (``rel_k_embed``), so checkpoints are
interchangeable and either implementation can be chosen by configuration.
"""

from __future__ import annotations

from typing import final

import torch
from fairseq2.error import NotSupportedError
from fairseq2.models.transformer import (
    SDPA,
    AttentionBias,
    AttentionBiasCache,
)
from fairseq2.models.transformer.attention_bias import maybe_get_attention_bias_tensor
from fairseq2.models.transformer.sdpa.naive import naive_scaled_dot_product_attention
from fairseq2.models.transformer.sdpa.shaw import init_shaw_embedding
from fairseq2.nn import BatchLayout, StandardEmbedding
from torch import Tensor
from torch.nn.functional import scaled_dot_product_attention
from typing_extensions import override


@final
class GatheredShawRelativePositionSDPA(SDPA):
    """Shaw et al. (2018) relative position keys, without relative values."""

    def __init__(
        self,
        model_dim: int,
        num_heads: int,
        bias: AttentionBias,
        max_lhs_rel_pos: int,
        *,
        max_rhs_rel_pos: int,
    ) -> None:
        super().__init__()

        if model_dim % num_heads != 0:
            raise ValueError(
                f"`model_dim` must be a multiple of `num_heads` ({num_heads}), but is {model_dim}."
            )

        self.model_dim = model_dim
        self.num_heads = num_heads
        self.bias = bias
        self.max_lhs_rel_pos = max_lhs_rel_pos
        self.max_rhs_rel_pos = max_rhs_rel_pos

        num_pos = max_lhs_rel_pos + 1 + max_rhs_rel_pos

        self.rel_k_embed = StandardEmbedding(
            num_pos, model_dim // num_heads, init_fn=init_shaw_embedding
        )

    @override
    def forward(
        self,
        q: Tensor,
        q_layout: BatchLayout,
        k: Tensor,
        k_layout: BatchLayout,
        v: Tensor,
        bias_cache: AttentionBiasCache,
        *,
        needs_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if q_layout.packed or k_layout.packed:
            raise NotSupportedError(
                f"`{GatheredShawRelativePositionSDPA}` does not support packed batches."
            )

        # ([[N], H], S, S_kv)
        bias = maybe_get_attention_bias_tensor(
            self.bias, q, q_layout, k_layout, bias_cache
        )

        # (N, S, H, K) -> (N, H, S, K)
        q = q.transpose(-2, -3)
        k = k.transpose(-2, -3)
        v = v.transpose(-2, -3)

        # (N, H, S, K) @ (K, P) -> (N, H, S, P): each query against the P
        # distinct relative keys, scaled here rather than after the gather so
        # the scaling touches P, not S_kv, columns.
        rel_logits = torch.matmul(q * q.size(-1) ** -0.5, self.rel_k_embed.weight.t())

        # (S, S_kv) -> (N, H, S, S_kv), a view.
        rel_indices = self._relative_indices(q.size(-2), k.size(-2), q.device)
        rel_indices = rel_indices.expand(*rel_logits.shape[:-1], -1)

        # (N, H, S, S_kv), a fresh tensor, so the padding mask is added in place.
        rel_bias = torch.gather(rel_logits, -1, rel_indices)

        if bias is not None:
            rel_bias.add_(bias)

        if needs_weights:
            attns, weights = naive_scaled_dot_product_attention(
                q, k, v, rel_bias, needs_weights=True
            )
        else:
            attns = scaled_dot_product_attention(q, k, v, attn_mask=rel_bias)
            weights = None

        # (N, H, S, V) -> (N, S, H, V)
        return attns.transpose(-2, -3), weights

    def _relative_indices(self, q_len: int, k_len: int, device: torch.device) -> Tensor:
        # Queries are the last `q_len` positions, as in fairseq2's Shaw SDPA.
        q_pos = torch.arange(k_len - q_len, k_len, device=device).unsqueeze(1)
        k_pos = torch.arange(k_len, device=device).unsqueeze(0)

        rel = torch.clamp(k_pos - q_pos, -self.max_lhs_rel_pos, self.max_rhs_rel_pos)

        return rel + self.max_lhs_rel_pos

    @override
    def extra_repr(self) -> str:
        """:meta private:"""
        return (
            f"model_dim={self.model_dim}, num_heads={self.num_heads}, "
            f"bias={self.bias}, max_lhs_rel_pos={self.max_lhs_rel_pos}, "
            f"max_rhs_rel_pos={self.max_rhs_rel_pos}"
        )
