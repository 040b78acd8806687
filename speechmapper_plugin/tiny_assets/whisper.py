"""A tiny Whisper checkpoint in Hugging Face's format, and its card.

The checkpoint is a whole transformers ``WhisperForConditionalGeneration``
(encoder and decoder) saved as safetensors, the layout of
``openai/whisper-large-v3``: the plugin's ``whisper_encoder`` family reads only
the encoder tensors from it. The encoder has the shape of the family's
``tiny`` arch (1-second windows); every parameter except the fixed sinusoidal
positions is perturbed so LayerNorm gains and biases are non-trivial.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

from speechmapper_plugin.models.whisper_encoder import WHISPER_ENCODER_FAMILY
from speechmapper_plugin.tiny_assets.encoders import (
    build_perturbed,
    tiny_encoder_card,
)

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration

WHISPER_TINY_DIMS: Final = {
    "model_dim": 64,
    "num_mel_bins": 16,
    "max_source_positions": 50,
    "num_encoder_layers": 2,
    "num_encoder_attn_heads": 4,
    "ffn_inner_dim": 128,
}
"""The dimensions of the ``tiny`` arch of ``whisper_encoder``."""


def build_tiny_whisper(seed: int = 0) -> WhisperForConditionalGeneration:
    """A tiny ``WhisperForConditionalGeneration`` in eval mode, perturbed."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    d = WHISPER_TINY_DIMS
    config = WhisperConfig(
        d_model=d["model_dim"],
        num_mel_bins=d["num_mel_bins"],
        max_source_positions=d["max_source_positions"],
        encoder_layers=d["num_encoder_layers"],
        encoder_attention_heads=d["num_encoder_attn_heads"],
        encoder_ffn_dim=d["ffn_inner_dim"],
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=64,
        max_target_positions=16,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )

    return build_perturbed(
        partial(WhisperForConditionalGeneration, config),
        seed,
        fixed=["model.encoder.embed_positions.weight"],
    )


def write_tiny_whisper(
    directory: Path, *, card_name: str, seed: int = 0
) -> dict[str, object]:
    """Save a tiny Whisper into ``directory`` (``save_pretrained``); return its card."""
    build_tiny_whisper(seed).save_pretrained(directory, safe_serialization=True)
    return tiny_encoder_card(card_name, WHISPER_ENCODER_FAMILY, directory)
