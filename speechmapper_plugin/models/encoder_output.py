"""Which layer a speech-encoder feature extractor returns, checked once for
every speech-encoder family (SeamlessM4T-v2, Whisper)."""

from __future__ import annotations

import torch
from fairseq2.utils.validation import ValidationResult
from torch.nn import Module


def check_output_layer(
    result: ValidationResult, output_layer: int, num_encoder_layers: int
) -> None:
    """Adds an error to ``result`` if a config's ``output_layer`` is no layer."""
    if not 1 <= output_layer <= num_encoder_layers:
        result.add_error(
            f"`output_layer` is 1-based and must be in [1, {num_encoder_layers}] (`num_encoder_layers`), but is {output_layer}."
        )


def resolve_output_layer(
    *,
    config_layer: int,
    config_layer_norm: bool,
    num_layers: int,
    layer: int | None,
    layer_norm: bool | None,
    frame_averaging: int,
) -> tuple[int, bool]:
    """The 1-based layer and LayerNorm flag to extract (the model config's
    unless given).

    :raises ValueError: on a layer outside ``[1, num_layers]`` or a
        non-positive ``frame_averaging``.
    """
    layer = config_layer if layer is None else layer
    layer_norm = config_layer_norm if layer_norm is None else layer_norm

    if not 1 <= layer <= num_layers:
        raise ValueError(
            f"`layer` is 1-based and must be in [1, {num_layers}], but is {layer}."
        )

    if frame_averaging < 1:
        raise ValueError(
            f"`frame_averaging` must be positive, but is {frame_averaging}."
        )

    return layer, layer_norm


def module_device(module: Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU without parameters)."""
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")
