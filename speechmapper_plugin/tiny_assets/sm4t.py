"""A tiny SeamlessM4T-v2 checkpoint in Hugging Face's format, and its card.

The checkpoint is a whole transformers ``SeamlessM4Tv2Model`` (speech encoder,
text encoder/decoder, T2U model, vocoder) saved as sharded safetensors with an
index, the layout of ``facebook/seamless-m4t-v2-large``: the plugin's
``sm4t_speech_encoder`` family reads only the speech-encoder tensors from it,
exactly as it does from the 2.3B release. The speech encoder has the shape of
the family's ``tiny`` arch; every parameter is perturbed so LayerNorm gains and
biases, relative-position tables etc. are all non-trivial. The same checkpoint
read as the ``tiny_adaptor`` arch gives the features after SeamlessM4T's
length adaptor (:func:`sm4t_adaptor_card`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from speechmapper_plugin.models.sm4t_speech_encoder import SM4T_SPEECH_ENCODER_FAMILY
from speechmapper_plugin.tiny_assets.encoders import (
    build_perturbed,
    tiny_encoder_card,
)

if TYPE_CHECKING:
    from transformers import SeamlessM4Tv2Model

SM4T_TINY_DIMS: Final = {
    "model_dim": 64,
    "num_encoder_layers": 4,
    "num_encoder_attn_heads": 4,
    "ffn_inner_dim": 128,
}
"""The dimensions of the ``tiny`` arch of ``sm4t_speech_encoder``."""

SM4T_TINY_ADAPTOR_ARCH: Final = "tiny_adaptor"
"""The arch that reads a tiny checkpoint up to the end of its length adaptor."""


def build_tiny_sm4t_v2(
    seed: int = 0, *, num_adapter_layers: int = 1, **dims: int
) -> SeamlessM4Tv2Model:
    """A tiny ``SeamlessM4Tv2Model`` in eval mode with perturbed random weights.

    :param num_adapter_layers: Length adaptor layers (SeamlessM4T-v2 large has
        one; its kernel and stride 8 are kept).
    :param dims: overrides of :data:`SM4T_TINY_DIMS` (``model_dim``,
        ``num_encoder_layers``, ``num_encoder_attn_heads``, ``ffn_inner_dim``).
    """
    from transformers import SeamlessM4Tv2Config, SeamlessM4Tv2Model

    unknown = set(dims) - set(SM4T_TINY_DIMS)
    if unknown:
        raise ValueError(
            f"Unknown SeamlessM4T dimensions {sorted(unknown)}; expected some of {sorted(SM4T_TINY_DIMS)}."
        )

    d = {**SM4T_TINY_DIMS, **dims}

    config = SeamlessM4Tv2Config(
        hidden_size=d["model_dim"],
        speech_encoder_layers=d["num_encoder_layers"],
        speech_encoder_attention_heads=d["num_encoder_attn_heads"],
        speech_encoder_intermediate_size=d["ffn_inner_dim"],
        # Kept at SeamlessM4T-v2 large values.
        conv_depthwise_kernel_size=31,
        left_max_position_embeddings=64,
        right_max_position_embeddings=8,
        adaptor_kernel_size=8,
        adaptor_stride=8,
        num_adapter_layers=num_adapter_layers,
        speech_encoder_dropout=0.0,
        speech_encoder_layerdrop=0.0,
        # Everything else as small as transformers allows.
        vocab_size=64,
        t2u_vocab_size=32,
        char_vocab_size=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        t2u_encoder_layers=1,
        t2u_decoder_layers=1,
        t2u_encoder_attention_heads=4,
        t2u_decoder_attention_heads=4,
        t2u_encoder_ffn_dim=64,
        t2u_decoder_ffn_dim=64,
        unit_embed_dim=16,
        upsample_initial_channel=16,
        upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        unit_hifi_gan_vocab_size=32,
        spkr_embed_dim=8,
        lang_embed_dim=8,
        vocoder_num_langs=2,
        vocoder_num_spkrs=2,
        max_position_embeddings=64,
        t2u_max_position_embeddings=64,
    )

    return build_perturbed(partial(SeamlessM4Tv2Model, config), seed)


def save_sm4t_hf_checkpoint(
    model: SeamlessM4Tv2Model, directory: Path, *, max_shard_size: str = "300KB"
) -> Path:
    """``save_pretrained`` into several safetensors shards plus their index,
    so the shard-selecting loader is exercised as on the real release."""
    model.save_pretrained(
        directory, safe_serialization=True, max_shard_size=max_shard_size
    )
    return directory


def write_tiny_sm4t(
    directory: Path, *, card_name: str, seed: int = 0
) -> dict[str, object]:
    """Save a tiny SeamlessM4T-v2 into ``directory``; return its card."""
    save_sm4t_hf_checkpoint(build_tiny_sm4t_v2(seed), directory)
    return tiny_encoder_card(card_name, SM4T_SPEECH_ENCODER_FAMILY, directory)


def sm4t_adaptor_card(card_name: str, directory: Path) -> dict[str, object]:
    """A card reading the tiny SeamlessM4T-v2 in ``directory`` (written by
    :func:`write_tiny_sm4t`) up to the end of its length adaptor (6.25 Hz)."""
    return tiny_encoder_card(
        card_name, SM4T_SPEECH_ENCODER_FAMILY, directory, arch=SM4T_TINY_ADAPTOR_ARCH
    )
