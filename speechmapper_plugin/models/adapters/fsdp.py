"""FSDP for the adapters (``trainer.data_parallelism: fsdp``)."""

from __future__ import annotations

from fairseq2.error import NotSupportedError
from fairseq2.models.utils.fsdp import apply_layerwise_fsdp
from fairseq2.nn.fsdp import FSDPWrapper
from torch.nn import Module

from speechmapper_plugin.models.adapters.model import SpeechAdapter


def apply_fsdp_to_speech_adapter(
    model: SpeechAdapter, granularity: str, wrapper: FSDPWrapper
) -> Module:
    """Shards every Transformer layer (``layer``) or every encoder (``stack``);
    the rest (projections, length adapter) is sharded with the root."""
    encoders = [e for e in (model.pre_encoder, model.post_encoder) if e is not None]

    if granularity == "layer":
        for encoder in encoders:
            apply_layerwise_fsdp(encoder.layers, wrapper)
        return model

    if granularity == "stack":
        if model.pre_encoder is not None:
            model.pre_encoder = wrapper(model.pre_encoder)  # type: ignore[assignment]
        if model.post_encoder is not None:
            model.post_encoder = wrapper(model.post_encoder)  # type: ignore[assignment]
        return model

    raise NotSupportedError(
        f"`granularity` must be 'layer' or 'stack' for an adapter, but is '{granularity}'."
    )
