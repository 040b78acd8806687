"""Which of a variable-length adapter's own losses a model reports, so that
the stage criteria register only metrics they can update: a metric no batch
updates logs ``0`` at every step and torchmetrics warns "No calls to update()
have been made" (the paper projector has neither loss)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from torch.nn import Module

from speechmapper_plugin.models.adapters.cif import CIFLengthAdapter
from speechmapper_plugin.models.adapters.ctc import CTCCompressionLengthAdapter

ADAPTER_LOSS_MODULES: Final[Mapping[str, type[Module]]] = {
    "ctc": CTCCompressionLengthAdapter,
    "quantity": CIFLengthAdapter,
}
"""A metric name and the length adapter whose forward pass fills what that
loss reads (:class:`~speechmapper_plugin.models.adapters.AdapterAux`)."""


def adapter_loss_metrics(model: Module) -> frozenset[str]:
    """The adapter-loss metrics ``model`` can report: ``ctc`` for a
    ``ctc_compression`` head, ``quantity`` for CIF. Looks through data-parallel
    wrappers (DDP holds the model as a child; FSDP2 shards it in place)."""
    modules = list(model.modules())
    return frozenset(
        name
        for name, kls in ADAPTER_LOSS_MODULES.items()
        if any(isinstance(m, kls) for m in modules)
    )
