"""Reads adapter checkpoints written by our recipes or by plain ``torch.save``."""

from __future__ import annotations

from typing import Any

from speechmapper_plugin.models.adapters.config import AdapterConfig
from speechmapper_plugin.models.speechmapper.interop import (
    convert_speechmapper_state_dict,
)


def convert_speech_adapter_state_dict(
    state_dict: dict[str, Any], config: AdapterConfig
) -> dict[str, Any]:
    """The same unwrapping as the projector's (``{"model": ...}``, ``module.``)."""
    return convert_speechmapper_state_dict(state_dict, None)  # type: ignore[arg-type]
