"""Architectures the plugin adds to fairseq2's ``llama`` family (target LLMs)."""

from __future__ import annotations

from typing import Final

from fairseq2.models.llama import LLaMAConfig
from fairseq2.runtime.config_registry import ConfigRegistrar
from fairseq2.runtime.dependency import DependencyContainer

EUROLLM_9B_ARCH: Final = "eurollm_9b"

MISTRAL_7B_V0_3_ARCH: Final = "mistral_7b_v0_3"


def eurollm_9b_config() -> LLaMAConfig:
    """EuroLLM-9B (``utter-project/EuroLLM-9B[-Instruct]``): a Llama-architecture
    decoder with its own shape.

    Public HF config: hidden 4096, 42 layers, 32 heads / 8 KV heads, intermediate
    12288, vocab 128000, rope_theta 10000, 4096 positions, rms_norm_eps 1e-5,
    untied embeddings, pad ``</s>`` = 2.
    """
    return _llama_decoder(
        model_dim=4096,
        max_seq_len=4096,
        vocab_size=128_000,
        pad_idx=2,
        num_layers=42,
        intermediate_size=12_288,
        rope_theta=10_000.0,
        # The vocabulary (128000) splits evenly under tensor parallelism, like
        # Llama 3's; shard the vocabulary, not the embedding width.
        shard_embed_dim=False,
    )


def mistral_7b_v0_3_config() -> LLaMAConfig:
    """Mistral-7B(-Instruct)-v0.3 as a ``llama``-family model.

    fairseq2's own ``mistral`` family is Mistral 7B v0.1: a 4096-token sliding
    window and a RoPE base of 10000 that its config cannot change. v0.2 and
    v0.3 dropped the window and use a base of 1e6 (public HF config:
    ``sliding_window: null``, ``rope_theta: 1000000.0``); without a window the
    v0.3 decoder is exactly Llama's (RMSNorm, SwiGLU, GQA), so it is built by
    fairseq2's ``llama`` family, which also reads both checkpoint layouts
    (Mistral's ``consolidated.safetensors`` and transformers' shards).

    Public HF config: hidden 4096, 32 layers, 32 heads / 8 KV heads,
    intermediate 14336, vocab 32768, 32768 positions, rms_norm_eps 1e-5,
    untied embeddings, no pad token.
    """
    return _llama_decoder(
        model_dim=4096,
        max_seq_len=32_768,
        vocab_size=32_768,
        pad_idx=None,
        num_layers=32,
        intermediate_size=14_336,
        rope_theta=1_000_000.0,
    )


def _llama_decoder(
    *,
    model_dim: int,
    max_seq_len: int,
    vocab_size: int,
    pad_idx: int | None,
    num_layers: int,
    intermediate_size: int,
    rope_theta: float,
    shard_embed_dim: bool = True,
) -> LLaMAConfig:
    """A Llama-architecture decoder from its public HF config numbers: 32
    attention heads over 8 KV heads, untied embeddings, unscaled RoPE.

    fairseq2 derives the FFN width as ``ffn_inner_dim * multiplier * 2/3``
    rounded up to ``ffn_inner_dim_multiple_of``, so ``ffn_inner_dim =
    intermediate_size * 3 / 2`` lands exactly on HF's ``intermediate_size``.
    """
    return LLaMAConfig(
        model_dim=model_dim,
        max_seq_len=max_seq_len,
        vocab_size=vocab_size,
        pad_idx=pad_idx,
        tied_embeddings=False,
        num_layers=num_layers,
        num_attn_heads=32,
        num_key_value_heads=8,
        ffn_inner_dim=intermediate_size * 3 // 2,
        ffn_inner_dim_multiplier=1.0,
        ffn_inner_dim_multiple_of=256,
        rope_theta=rope_theta,
        use_scaled_rope=False,
        dropout_p=0.0,
        shard_embed_dim=shard_embed_dim,
    )


def register_target_llm_configs(container: DependencyContainer) -> None:
    """Register the target-LLM archs that fairseq2 does not ship."""
    arch = ConfigRegistrar(container, LLaMAConfig)

    arch(EUROLLM_9B_ARCH)(eurollm_9b_config)
    arch(MISTRAL_7B_V0_3_ARCH)(mistral_7b_v0_3_config)
