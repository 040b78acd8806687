"""Reads the Whisper encoder out of Hugging Face checkpoints.

transformers' ``WhisperForConditionalGeneration`` (``openai/whisper-*``
releases) keeps the encoder under ``model.encoder.*``, a saved ``WhisperModel``
under ``encoder.*``; decoder keys (``model.decoder.*``, ``decoder.*``,
``proj_out.*``) are skipped. Checkpoints saved from :class:`WhisperEncoder`
itself pass through.

Two tensors have no parameter here:

- ``embed_positions.weight``: Whisper's fixed sinusoids (frozen in
  transformers, a buffer in OpenAI's code). The model recomputes them
  (fairseq2's ``SinusoidalPositionEncoder``); the converter checks the
  checkpoint's table equals them (to fp16 rounding) and refuses a checkpoint
  with learned positions instead of loading wrong ones silently.
- the key projection's bias, which Whisper lacks: set to zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import torch
from fairseq2.nn import SinusoidalPositionEncoder
from torch import Tensor

from speechmapper_plugin.models.speech_encoder import (
    encoder_layer_indices,
    unwrap_checkpoint,
)
from speechmapper_plugin.models.whisper_encoder.config import WhisperEncoderConfig

ENCODER_PREFIXES: Final = ("model.encoder.", "encoder.")

DECODER_PATTERN: Final = re.compile(r"(?:model\.)?decoder\.|proj_out\.")

NATIVE_PREFIXES: Final = ("frontend.", "encoder.layers.", "encoder.layer_norm.")

POSITION_ATOL: Final = 1e-3
"""fp16 rounding of values in [-1, 1] is below 5e-4."""

_RENAMES: Final = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"conv([12])\.(weight|bias)", r"frontend.conv\1.\2"),
        (
            r"layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)",
            r"encoder.layers.\1.self_attn.\2.\3",
        ),
        (
            r"layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
            r"encoder.layers.\1.self_attn.output_proj.\2",
        ),
        (
            r"layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)",
            r"encoder.layers.\1.self_attn_layer_norm.\2",
        ),
        (r"layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.ffn.inner_proj.\2"),
        (r"layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.ffn.output_proj.\2"),
        (
            r"layers\.(\d+)\.final_layer_norm\.(weight|bias)",
            r"encoder.layers.\1.ffn_layer_norm.\2",
        ),
        (r"layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    )
)

_POSITIONS: Final = "embed_positions.weight"


def _is_native(keys: Iterable[str]) -> bool:
    return any(k.startswith("frontend.") for k in keys)


def _encoder_prefix(keys: Iterable[str]) -> str:
    keys = list(keys)
    for prefix in ENCODER_PREFIXES:
        if any(k.startswith(prefix + "conv1.") for k in keys):
            return prefix
    raise ValueError(
        "The checkpoint has no Whisper encoder: expected `model.encoder.conv1.weight` (transformers' WhisperForConditionalGeneration), `encoder.conv1.weight` (WhisperModel) or a checkpoint saved from WhisperEncoder."
    )


def select_whisper_encoder_keys(keys: Iterable[str]) -> list[str]:
    """The keys of a flat checkpoint whose tensors the encoder needs, from
    names alone (so a loader reads no decoder tensor).

    :raises ValueError: naming a key that is neither encoder nor decoder.
    """
    keys = list(keys)

    if _is_native(keys):
        return keys

    prefix = _encoder_prefix(keys)

    selected = []
    for key in keys:
        if key.startswith(prefix):
            selected.append(key)
        elif not DECODER_PATTERN.match(key):
            raise ValueError(
                f"Unexpected key `{key}` in a Whisper checkpoint: it is neither an encoder nor a decoder weight."
            )

    return selected


def convert_whisper_encoder_state_dict(
    state_dict: dict[str, object], config: WhisperEncoderConfig
) -> dict[str, object]:
    """Map a transformers or native checkpoint onto :class:`WhisperEncoder`.

    :raises ValueError: on an unexpected key, a layer count other than
        ``config.num_encoder_layers``, or positions that are not Whisper's
        sinusoids.
    """
    source = unwrap_checkpoint(state_dict)

    if _is_native(source):
        return dict(source)

    prefix = _encoder_prefix(source)

    converted: dict[str, object] = {}

    for key in select_whisper_encoder_keys(source):
        name = key[len(prefix) :]

        if name == _POSITIONS:
            _check_positions(source[key], config)
            continue

        for pattern, replacement in _RENAMES:
            if pattern.fullmatch(name):
                converted[pattern.sub(replacement, name)] = source[key]
                break
        else:
            raise ValueError(f"Unexpected key `{key}` in a Whisper encoder checkpoint.")

    layers = encoder_layer_indices(converted)
    if len(layers) != config.num_encoder_layers:
        raise ValueError(
            f"The checkpoint has {len(layers)} encoder blocks, but the config (`num_encoder_layers`) expects {config.num_encoder_layers}; is the card's `model_arch` right?"
        )

    for layer in sorted(layers):
        q_bias = converted.get(f"encoder.layers.{layer}.self_attn.q_proj.bias")
        k_key = f"encoder.layers.{layer}.self_attn.k_proj.bias"
        if isinstance(q_bias, Tensor) and k_key not in converted:
            converted[k_key] = torch.zeros_like(q_bias)

    return converted


def _check_positions(table: object, config: WhisperEncoderConfig) -> None:
    if not isinstance(table, Tensor):
        raise ValueError("`embed_positions.weight` is not a tensor.")

    expected_shape = (config.max_source_positions, config.model_dim)
    if tuple(table.shape) != expected_shape:
        raise ValueError(
            f"The checkpoint's position table has shape {tuple(table.shape)}, but the config expects {expected_shape} (`max_source_positions`, `model_dim`)."
        )

    reference = SinusoidalPositionEncoder(config.model_dim, config.max_source_positions)
    sinusoids = reference.freqs[1:]

    diff = (table.float() - sinusoids).abs().max().item()
    if diff > POSITION_ATOL:
        raise ValueError(
            f"The checkpoint's `embed_positions.weight` differs from Whisper's sinusoids by {diff:.3g} (> {POSITION_ATOL}); this family computes fixed sinusoidal positions and cannot load learned ones."
        )
