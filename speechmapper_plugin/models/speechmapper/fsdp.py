"""FSDP for the projector (``trainer.data_parallelism: fsdp``)."""

from __future__ import annotations

from fairseq2.error import NotSupportedError
from fairseq2.models.utils.fsdp import apply_layerwise_fsdp
from fairseq2.nn.fsdp import FSDPWrapper
from torch.nn import Module

from speechmapper_plugin.models.speechmapper.model import SpeechMapperProjector


def apply_fsdp_to_speechmapper(
    model: SpeechMapperProjector, granularity: str, wrapper: FSDPWrapper
) -> Module:
    """Shards every Transformer layer (``layer``) or every block (``stack``);
    what is left (convolutions, linear maps) is sharded with the root."""
    if granularity == "layer":
        for block in model.blocks:
            apply_layerwise_fsdp(block.encoder.layers, wrapper)  # type: ignore[union-attr,arg-type]
        return model

    if granularity == "stack":
        for idx, block in enumerate(model.blocks):
            model.blocks[idx] = wrapper(block)
        return model

    raise NotSupportedError(
        f"`granularity` must be 'layer' or 'stack' for the projector, but is '{granularity}'."
    )
