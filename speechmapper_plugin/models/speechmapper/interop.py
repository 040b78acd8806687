"""Reads projector checkpoints written by our recipes or by plain ``torch.save``."""

from __future__ import annotations

from typing import Any

from speechmapper_plugin.models.speechmapper.config import SpeechMapperConfig


def convert_speechmapper_state_dict(
    state_dict: dict[str, Any], config: SpeechMapperConfig
) -> dict[str, Any]:
    """Unwrap ``{"model": state_dict}`` files and DDP's ``module.`` prefix."""
    model_state = state_dict.get("model")
    if isinstance(model_state, dict):
        state_dict = model_state

    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}

    return state_dict
