"""Tiny SeamlessM4T-v2 reference models and checkpoints in both formats.

The reference is transformers' ``SeamlessM4Tv2Model`` (the whole model, so
the checkpoints carry the text decoder, T2U model and vocoder the loader must
skip), built by :mod:`speechmapper_plugin.tiny_assets.sm4t` (which the
quickstart uses too). Every parameter is perturbed so LayerNorm gains/biases,
the relative position tables etc. are all non-trivial.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from fairseq2.nn import BatchLayout
from torch import Tensor

from speechmapper_plugin.tiny_assets.sm4t import (
    SM4T_TINY_DIMS,
    build_tiny_sm4t_v2,
    save_sm4t_hf_checkpoint,
)

TINY_DIMS = SM4T_TINY_DIMS
"""The dimensions of the ``tiny`` arch of ``sm4t_speech_encoder``."""

SM4T_SEED = 0
"""The seed of the model behind the ``test_sm4t_*`` cards."""


def build_hf_model(seed: int = 0, **overrides: int) -> torch.nn.Module:
    """A tiny ``SeamlessM4Tv2Model`` in eval mode with perturbed parameters.

    :param overrides: ``model_dim``, ``num_encoder_layers``,
        ``num_encoder_attn_heads``, ``ffn_inner_dim``.
    """
    return build_tiny_sm4t_v2(seed, **overrides)


# HF -> Meta fairseq2-0.2 (UnitYModel) names, written out independently of the
# plugin's converter so the round trip tests it.
_HF_TO_META = [
    (
        r"speech_encoder\.feature_projection\.layer_norm\.",
        "speech_encoder_frontend.post_extract_layer_norm.",
    ),
    (
        r"speech_encoder\.feature_projection\.projection\.",
        "speech_encoder_frontend.model_dim_proj.",
    ),
    (r"speech_encoder\.encoder\.layer_norm\.", "speech_encoder.inner_layer_norm."),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.ffn(\d)\.intermediate_dense\.",
        r"speech_encoder.inner.layers.\1.ffn\2.inner_proj.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.ffn(\d)\.output_dense\.",
        r"speech_encoder.inner.layers.\1.ffn\2.output_proj.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.self_attn\.linear_out\.",
        r"speech_encoder.inner.layers.\1.self_attn.output_proj.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.self_attn\.linear_(.)\.",
        r"speech_encoder.inner.layers.\1.self_attn.\2_proj.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.self_attn\.distance_embedding\.",
        r"speech_encoder.inner.layers.\1.self_attn.sdpa.rel_k_embed.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.conv_module\.layer_norm\.",
        r"speech_encoder.inner.layers.\1.conv_layer_norm.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.conv_module\.depthwise_layer_norm\.",
        r"speech_encoder.inner.layers.\1.conv.layer_norm.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.conv_module\.",
        r"speech_encoder.inner.layers.\1.conv.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.final_layer_norm\.",
        r"speech_encoder.inner.layers.\1.layer_norm.",
    ),
    (r"speech_encoder\.encoder\.layers\.(\d+)\.", r"speech_encoder.inner.layers.\1."),
    # The intermediate FFN and the length adaptor (UnitYEncoderAdaptor), then
    # the parts of UnitY the speech encoder does not use.
    (
        r"speech_encoder\.intermediate_ffn\.intermediate_dense\.",
        "speech_encoder.proj1.",
    ),
    (r"speech_encoder\.intermediate_ffn\.output_dense\.", "speech_encoder.proj2."),
    (
        r"speech_encoder\.adapter\.layers\.(\d+)\.self_attn\.linear_out\.",
        r"speech_encoder.adaptor_layers.\1.self_attn.output_proj.",
    ),
    (
        r"speech_encoder\.adapter\.layers\.(\d+)\.self_attn\.linear_(.)\.",
        r"speech_encoder.adaptor_layers.\1.self_attn.\2_proj.",
    ),
    (
        r"speech_encoder\.adapter\.layers\.(\d+)\.ffn\.intermediate_dense\.",
        r"speech_encoder.adaptor_layers.\1.ffn.inner_proj.",
    ),
    (
        r"speech_encoder\.adapter\.layers\.(\d+)\.ffn\.output_dense\.",
        r"speech_encoder.adaptor_layers.\1.ffn.output_proj.",
    ),
    # `residual_layer_norm`, `residual_conv`, `self_attn_layer_norm`,
    # `self_attn_conv`, `ffn_layer_norm`: the same names.
    (r"speech_encoder\.adapter\.layers\.", "speech_encoder.adaptor_layers."),
    (r"speech_encoder\.inner_layer_norm\.", "speech_encoder.layer_norm."),
    (r"shared\.weight", "text_decoder_frontend.embed.weight"),
    (r"lm_head\.weight", "final_proj.weight"),
    (r"text_encoder\.", "text_encoder."),
    (r"text_decoder\.", "text_decoder."),
    (r"t2u_model\.", "t2u_model."),
]


def hf_to_meta_state_dict(hf_state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state dict Meta's fairseq2-0.2 ``UnitYModel`` would hold.

    The vocoder is a separate file in Meta's release, so it is left out.
    """
    meta: dict[str, Tensor] = {}
    for key, value in hf_state_dict.items():
        if key.startswith("vocoder."):
            continue
        for pattern, replacement in _HF_TO_META:
            if re.match(pattern, key):
                meta[re.sub(pattern, replacement, key, count=1)] = value.clone()
                break
        else:
            raise AssertionError(f"no Meta name for {key}")
    return meta


def save_hf_checkpoint(model: torch.nn.Module, directory: Path) -> Path:
    """``save_pretrained`` into several safetensors shards plus the index."""
    return save_sm4t_hf_checkpoint(model, directory)


def save_meta_checkpoint(model: torch.nn.Module, file: Path) -> Path:
    """Save a Meta-format ``.pt`` (``{"model": state_dict}``)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": hf_to_meta_state_dict(model.state_dict())}, file)
    return file


@torch.no_grad()
def hf_speech_layers(
    model: torch.nn.Module, features: Tensor, attention_mask: Tensor | None = None
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Run HF's speech encoder on stacked features ``[N, T, 160]``.

    :returns: the raw output of every Conformer block (``hidden_states[k]`` for
        ``k < L`` and a forward hook on the last block), and
        ``hidden_states[L]`` (LayerNorm'd last block).
    """
    encoder = model.speech_encoder
    captured: list[Tensor] = []
    handle = encoder.encoder.layers[-1].register_forward_hook(
        lambda _m, _i, out: captured.append(out[0])
    )
    try:
        out = encoder(
            features, attention_mask=attention_mask, output_hidden_states=True
        )
    finally:
        handle.remove()
    hidden = out.hidden_states
    raw = list(hidden[1:-1]) + [captured[0]]
    return raw, hidden[-1], hidden[0]


def random_fbank(lengths: list[int], seed: int = 0) -> tuple[Tensor, BatchLayout]:
    """A right-padded batch of random "fbank" rows ``[N, max(lengths), 80]``
    (zeros past each length) and its layout, for encoder-level parity tests."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths), 80)
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randn(n, 80, generator=generator)
    return batch, BatchLayout.of(batch, lengths)


def speech_like(num_samples: int, seed: int = 0, sample_rate: int = 16_000) -> Tensor:
    """A deterministic, speech-like test signal in [-1, 1] (harmonics + noise)."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    f0 = 120.0 + 30.0 * torch.sin(2 * math.pi * 3.0 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    signal = sum(torch.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4.0 * t) ** 2
    noise = 0.05 * torch.randn(num_samples, generator=generator, dtype=torch.float64)
    wave = 0.3 * envelope * signal + noise
    return wave.clamp(-1, 1).to(torch.float32)


def wav_bytes(samples: Tensor, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of ``samples`` (``[N]`` or ``[N, channels]``, in [-1, 1])."""
    import io
    import wave

    if samples.dim() == 1:
        samples = samples.unsqueeze(1)
    pcm = (samples.clamp(-1, 1) * 32767).round().to(torch.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(samples.size(1))
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.numpy().astype("<i2").tobytes())
    return buffer.getvalue()


def tone(
    freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5
) -> Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).to(torch.float32)
